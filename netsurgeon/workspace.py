"""The working copy a pass edits: the traced model, a cached graph index, and the history so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from netsurgeon.errors import TraceError
from netsurgeon.graph.rewrite import finalize
from netsurgeon.graph.sites import GraphIndex
from netsurgeon.graph.trace import Traced
from netsurgeon.registry import Contract

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
    was_training = gm.training
    gm.eval()
    try:
        recorder.run(x)
    finally:
        gm.train(was_training)
    return recorder.shapes


@dataclass
class Workspace:
    traced: Traced
    history: list[dict[str, Any]] = field(default_factory=list)  # passes applied before, oldest first
    notes: list[str] = field(default_factory=list)  # what the running pass wants the report to say
    probe: torch.Tensor | None = field(default=None, repr=False)  # a batch shaped like the model's input
    data: Any = field(default=None, repr=False)  # (inputs, labels) batches for data-driven passes (gru-fc)
    contract: Contract | None = None  # set by a pass whose promise depends on its config (warm start)
    changed_keys: set[str] = field(default_factory=set)  # state_dict keys the running pass changed on purpose
    resolved: dict[str, Any] = field(default_factory=dict)  # what the running pass chose for 'auto' values
    _index: GraphIndex | None = field(default=None, repr=False)

    @property
    def model(self) -> nn.Module:
        return self.traced.module

    def gm(self, pass_name: str) -> fx.GraphModule:
        """The graph module; passes that need a graph call this and get a clear error on the fallback rung."""
        if not self.traced.has_graph:
            reasons = "; ".join(self.traced.failures) or "no reason recorded"
            raise TraceError(
                f"{pass_name} needs a torch.fx graph, but this model cannot be traced ({reasons}). "
                "Run 'netsurgeon inspect' to see the trace, or make the model traceable "
                "(register untraceable submodules as fx leaf modules)."
            )
        return self.traced.gm

    def index(self, pass_name: str) -> GraphIndex:
        if self._index is None:
            self._index = GraphIndex(self.gm(pass_name))
        return self._index

    def shapes(self, pass_name: str) -> dict[str, torch.Size]:
        """Output shape of every tensor-valued node, from one eval-mode forward of the probe batch.

        Measured, never read from module attributes; computed on the current graph (not cached).
        """
        gm = self.gm(pass_name)
        if self.probe is None:
            raise TraceError(f"{pass_name} needs a probe input to measure shapes; pass example_input or input_size.")
        return record_shapes(gm, self.probe)

    def commit(self) -> None:
        """Finish a graph edit (the shared epilogue) and drop the stale index."""
        if self.traced.has_graph:
            finalize(self.traced.gm)
        self._index = None

    def note(self, message: str) -> None:
        self.notes.append(message)

    def applied(self, pass_name: str) -> bool:
        return any(h.get("pass") == pass_name for h in self.history)
