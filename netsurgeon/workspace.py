"""The working copy a pass edits: the user's model (copied), its analysis graph, and the history so far."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from netsurgeon.errors import SurgeryError, TraceError
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.scoped import ScopedEditor
from netsurgeon.graph.trace import Traced, trace
from netsurgeon.modes import in_mode

__all__ = ["Workspace", "record_shapes"]


class _ShapeRecorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[str, torch.Size] = {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.shapes[n.name] = out.shape
        return out


@torch.no_grad()
def record_shapes(gm: fx.GraphModule, x: torch.Tensor) -> dict[str, torch.Size]:
    """Run ``gm`` once in eval mode on ``x`` and return each node's output shape (by node name)."""
    recorder = _ShapeRecorder(gm)
    with in_mode(gm, False):
        recorder.run(x)
    return recorder.shapes


@dataclass
class Workspace:
    """What a running pass reads (the working model, its analysis graph, probe, data, history) and edits.

    ``model`` is a private copy of the user's model and becomes the result: it keeps the user's class.
    ``traced`` is its whole-model analysis graph, which shares its submodules (and so its weights).
    Passes plan on the graph (``index``, ``shapes``) and edit through ``editor``, which applies each
    edit to ``model`` at the smallest scope (:mod:`netsurgeon.graph.scoped`); ``commit`` ends a pass.
    ``run_pass`` tells the workspace which pass runs (:meth:`running`), so those methods name it in
    their errors without the pass repeating its name.
    What a pass did is not written here: the pass returns it (:class:`~netsurgeon.outcome.PassOutcome`).
    """

    model: nn.Module
    traced: Traced
    history: list[dict[str, Any]] = field(default_factory=list)  # passes applied before, oldest first
    probe: torch.Tensor | None = field(default=None, repr=False)  # a batch shaped like the model's input
    data: Any = field(default=None, repr=False)  # (inputs, labels) batches for data-driven passes (gru-fc)
    _index: GraphIndex | None = field(default=None, repr=False)
    _editor: ScopedEditor | None = field(default=None, repr=False)
    _running: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, model: nn.Module, *, share_tensors: bool = False, **kwargs: Any) -> Workspace:
        """A workspace on a private copy of ``model`` (in eval mode); ``model`` itself is never touched.

        ``share_tensors``: copy the modules but not their parameters and buffers (a dry run of passes that
        never edit a tensor in place: cloning the weights is most of the copy's cost). Such a workspace's
        model must not outlive the dry run.
        """
        working = cls.private_copy(model, share_tensors=share_tensors)
        return cls(working, trace(working, copy_model=False), **kwargs)

    @staticmethod
    def private_copy(model: nn.Module, *, share_tensors: bool = False) -> nn.Module:
        """A deep copy of ``model`` in eval mode; with ``share_tensors`` its parameters and buffers are the
        caller's own (see :meth:`of`)."""
        memo: dict[int, Any] = {}
        if share_tensors:
            memo.update({id(t): t for t in model.parameters()})
            memo.update({id(t): t for t in model.buffers()})
        return copy.deepcopy(model, memo).eval()

    @contextmanager
    def running(self, pass_name: str) -> Iterator[Workspace]:
        """Mark ``pass_name`` as the running pass for the block (``run_pass`` does this around a pass)."""
        outer, self._running = self._running, pass_name
        try:
            yield self
        finally:
            self._running = outer

    def _pass_name(self) -> str:
        """The running pass (see :meth:`running`): the graph methods are only for a running pass."""
        if self._running is None:
            raise SurgeryError("the workspace's graph, editor and shapes are for a running pass: run the pass "
                               "through netsurgeon.apply (or api.run_pass), or wrap the calls in "
                               "'with ws.running(name):'.")
        return self._running

    def gm(self) -> fx.GraphModule:
        """The graph module; passes that need a graph call this and get a clear error on the fallback rung."""
        pass_name = self._pass_name()
        if not self.traced.has_graph:
            reasons = "; ".join(self.traced.failures) or "no reason recorded"
            raise TraceError(
                f"{pass_name} needs a torch.fx graph, but this model cannot be traced ({reasons}). "
                "Run 'netsurgeon inspect' to see the trace, or make the model traceable "
                "(register untraceable submodules as fx leaf modules)."
            )
        return self.traced.gm

    def index(self) -> GraphIndex:
        """The whole-model analysis graph (sites, blocks, heads) the running pass plans on."""
        self._pass_name()  # a running pass only, also when the index is cached
        if self._index is None:
            self._index = GraphIndex(self.gm())
        return self._index

    def editor(self) -> ScopedEditor:
        """Edits planned on :meth:`index`'s nodes, applied to :attr:`model` at the smallest scope."""
        self._pass_name()  # a running pass only, also when the editor is cached
        if self._editor is None:
            self._editor = ScopedEditor(self.model, self.index(), self.traced.autowrap, self.probe)
        return self._editor

    def shapes(self) -> dict[str, torch.Size]:
        """Output shape of every tensor-valued node, from one eval-mode forward of the probe batch.

        Measured, never read from module attributes; computed on the current graph (not cached).
        """
        gm = self.gm()
        if self.probe is None:
            raise TraceError(f"{self._pass_name()} needs a probe input to measure shapes; "
                             "pass example_input or input_size.")
        return record_shapes(gm, self.probe)

    def commit(self) -> None:
        """End a pass: apply its pending edits, and re-trace the model if its structure changed."""
        editor, self._editor, self._index = self._editor, None, None
        if editor is None or not editor.changed:
            return
        editor.apply()
        if not editor.flat:
            self.traced = trace(self.model, copy_model=False)

    def applied(self, pass_name: str) -> bool:
        return any(h.get("pass") == pass_name for h in self.history)
