"""``apply`` and ``plan``: the one orchestrator that the CLI, recipes and Python users all call."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netsurgeon.config import PassConfig
from netsurgeon.contract import Contract
from netsurgeon.errors import ConfigError, NetsurgeonError, NoEffectWarning, SurgeryError
from netsurgeon.graph.trace import TRACE_LOCK
from netsurgeon.history import HistoryEntry
from netsurgeon.models.info import ModelInfo, get_info, probe_input, set_info
from netsurgeon.modes import in_mode
from netsurgeon.outcome import PassOutcome
from netsurgeon.registry import get_pass
from netsurgeon.report import PassReport, SurgeryReport, Verification
from netsurgeon.validate import check_apply_args, check_contract, check_probe_runs, flatten_output
from netsurgeon.workspace import Workspace

__all__ = ["PassLike", "SurgeryResult", "apply", "plan", "probe_input", "resolve_passes", "run_pass"]

PassLike = PassConfig | str | tuple[str, dict[str, Any]]
#: an exact pass's bound: max |original - result| <= EXACT_ATOL * max(1, max |original|) on the probe. A
#: warm-started head computes the same logits through a wider matmul, whose float32 rounding grows with
#: the logits' magnitude (random-init timm dla46_c reaches ~500); pd-relu is bitwise equal anyway.
EXACT_ATOL = 1e-5


@dataclass
class SurgeryResult:
    """The modified model (a new module; the input is untouched) and what was done to it."""

    model: nn.Module
    report: SurgeryReport


def resolve_passes(passes: PassLike | Sequence[PassLike]) -> list[PassConfig]:
    """Accept configs, pass names, or ``(name, params)`` pairs; return validated configs."""
    if isinstance(passes, (PassConfig, str, tuple)):
        passes = [passes]
    configs = []
    for p in passes:
        if isinstance(p, PassConfig):
            get_pass(p.pass_name)  # must be registered
            configs.append(p)
        elif isinstance(p, str):
            configs.append(get_pass(p).make_config())
        elif isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], dict):
            configs.append(get_pass(p[0]).make_config(p[1]))
        else:
            raise ConfigError(f"cannot use {p!r} as a pass: give a config, a pass name, or (name, params).")
    if not configs:
        raise ConfigError("no passes given; run 'netsurgeon passes' to list them.")
    return configs


def _count_sites(ws: Workspace) -> int:
    """ReLU sites of the workspace's current model (module count on the module-tree rung)."""
    if not ws.traced.has_graph:
        return sum(isinstance(m, nn.ReLU) for m in ws.model.modules())
    with ws.running("apply"):
        return len(ws.index().sites(("ReLU",)))  # cached: the first pass reuses this index


def apply(
    model: nn.Module,
    passes: PassLike | Sequence[PassLike],
    *,
    example_input: torch.Tensor | None = None,
    input_size: Sequence[int] | None = None,
    verify: bool = True,
    allow_reapply: bool = False,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    allow_violation: bool = False,
) -> SurgeryResult:
    """Apply ``passes`` in order to a copy of ``model``.

    Args:
        model: any ``nn.Module``; it is never modified.
        passes: pass configs (``EraseReLU(proportion=0.5)``), names (``"erase-relu"``), or
            ``("erase-relu", {"proportion": 0.5})`` pairs.
        example_input: the probe batch for the equivalence check (default: seeded random input of
            ``input_size`` or the model's recorded input size).
        verify: run the probe check (a forward pass of each model). Off for dry runs.
        allow_reapply: apply a pass that the model's history already contains (by default refused,
            since e.g. a second EraseReLU would erase the *new* last ReLUs).
        data: ``(inputs, labels)`` batches (a DataLoader) for data-driven passes (gru-fc grad_contrib).
        allow_violation: keep the result when the verification finds the passes' contract violated
            (by default a ``ContractViolationError`` is raised; CLI: --allow-violation).

    Returns:
        SurgeryResult with ``.model`` (same train/eval mode as the input) and ``.report``.
    """
    return _surgery(model, passes, example_input=example_input, input_size=input_size, verify=verify,
                    allow_reapply=allow_reapply, data=data, allow_violation=allow_violation, dry_run=False)


def _one_at_a_time(fn: Callable[..., SurgeryResult]) -> Callable[..., SurgeryResult]:
    """Run ``fn`` holding ``TRACE_LOCK``: torch.fx patches ``nn.Module`` process-wide while it traces, so
    surgeries from several threads run one after the other."""

    @functools.wraps(fn)
    def serialised(*args: Any, **kwargs: Any) -> SurgeryResult:
        with TRACE_LOCK:
            return fn(*args, **kwargs)

    return serialised


@_one_at_a_time
def _surgery(
    model: nn.Module,
    passes: PassLike | Sequence[PassLike],
    *,
    example_input: torch.Tensor | None,
    input_size: Sequence[int] | None,
    verify: bool,
    allow_reapply: bool,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    allow_violation: bool,
    dry_run: bool,
) -> SurgeryResult:
    """``apply``; a ``dry_run`` (``plan``) does not verify and, when no pass edits tensors in place,
    works on a copy that shares the caller's tensors (its model is never handed out). One surgery at a
    time per process (fx's tracing patches ``nn.Module`` globally: see ``graph.trace.TRACE_LOCK``)."""
    check_apply_args(model, passes, input_size)
    configs = resolve_passes(passes)
    info = get_info(model) or ModelInfo(spec=f"module:{type(model).__name__}")
    x = example_input if example_input is not None else probe_input(model, input_size)
    # a probe the model cannot run is one clear error before any work; its output is the check's reference
    reference = check_probe_runs(model, x) if verify else None
    share = dry_run and not any(get_pass(c.pass_name).edits_weights for c in configs)
    ws = Workspace.of(model, share_tensors=share, history=list(info.history), probe=x, data=data)
    sites_before = _count_sites(ws)
    reports = []
    versions = _versions(model) if share else []
    for config in configs:
        reports.append(run_pass(ws, config, spec_label=info.spec, allow_reapply=allow_reapply))
        if share and _versions(model) != versions:
            raise SurgeryError(f"{config.pass_name} changed the caller's tensors in place during a dry run, "
                               "though it is registered with edits_weights=False (a bug in the pass): register it "
                               "with edits_weights=True.")
    result_model = ws.model
    _copy_modes(model, result_model)
    set_info(result_model, dataclasses.replace(info, history=tuple(ws.history)))
    before_state, after_state = model.state_dict(), result_model.state_dict()
    report = _surgery_report(info, ws, reports, model, sites_before, before_state, after_state,
                             dry_run=dry_run or not verify)
    if verify:
        exact = all(r.contract == Contract.EXACT.value for r in reports)
        kept = [k for k in before_state if k in after_state]
        untouched = [k for k in kept if not any(k in r.keys_changed for r in reports)]
        report.verification = _verify(reference, result_model, x, before_state, after_state, untouched, exact)
    result = SurgeryResult(result_model, report)
    check_contract(result, allow_violation)  # a violated contract is a failure unless allowed
    return result


def run_pass(ws: Workspace, config: PassConfig, *, spec_label: str = "the model",
             allow_reapply: bool = False) -> PassReport:
    """Run one pass on the workspace, commit its edits, record it in the history, and report it."""
    spec = get_pass(config.pass_name)
    if ws.applied(spec.name) and not allow_reapply:
        raise ConfigError(
            f"{spec.name} was already applied to this model; applying it again would act on the result "
            "of the first application. Pass allow_reapply=True (CLI: --allow-reapply) if you mean it."
        )
    params_before = {name for name, _ in ws.model.named_parameters()}
    try:
        with ws.running(spec.name):
            outcome = spec.fn(ws, config)
            if not isinstance(outcome, PassOutcome):
                raise SurgeryError(f"the pass returned {type(outcome).__name__}, not a PassOutcome; a pass function "
                                   "returns PassOutcome(changes=[...]) (CONTRIBUTING.md, 'add a surgery').")
            ws.commit()
    except NetsurgeonError as err:
        done = [entry.pass_name for entry in ws.history]
        context = f" (after {', '.join(done)})" if done else ""
        raise type(err)(f"{spec.name}{context}: {err}") from err
    contract = outcome.contract or spec.contract
    if not outcome.changes:
        advice = (f": {outcome.hint}" if outcome.hint
                  else "; run 'netsurgeon inspect' to see the model's sites and blocks")
        warnings.warn(
            f"{spec.name} changed nothing on {spec_label} ({config.describe()}){advice}.",
            NoEffectWarning,
            stacklevel=3,
        )
    new_params = [name for name, _ in ws.model.named_parameters() if name not in params_before]
    ws.history.append(HistoryEntry(pass_name=spec.name, version=config.version, config=config.to_dict(),
                                   sites=tuple(c.site for c in outcome.changes), contract=contract,
                                   resolved=dict(outcome.resolved), new_params=tuple(new_params)))
    return PassReport(spec.name, config.to_dict(), contract.value, list(outcome.changes), list(outcome.notes),
                      sorted(outcome.changed_keys), outcome.hint if not outcome.changes else "")


def _surgery_report(info: ModelInfo, ws: Workspace, reports: list[PassReport], model: nn.Module, sites_before: int,
                    before_state: dict[str, torch.Tensor], after_state: dict[str, torch.Tensor],
                    dry_run: bool) -> SurgeryReport:
    return SurgeryReport(
        model=info.spec,
        rung=ws.traced.rung.value,
        trace_failures=list(ws.traced.failures),
        passes=reports,
        relu_sites_before=sites_before,
        relu_sites_after=_count_sites(ws),
        params_before=sum(p.numel() for p in model.parameters()),
        params_after=sum(p.numel() for p in ws.model.parameters()),
        keys_kept=sum(k in after_state for k in before_state),
        keys_added=[k for k in after_state if k not in before_state],
        keys_removed=[k for k in before_state if k not in after_state],
        dry_run=dry_run,
        reinitialized=list(info.reinitialized),
        weights=_weights_line(info),
    )


def _output_pairs(a: Any, b: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """The matching tensors of two outputs of the same structure (a tensor, or lists/tuples/dicts of them);
    None when the structures or shapes differ."""
    leaves_a, spec_a = flatten_output(a)
    leaves_b, spec_b = flatten_output(b)
    if spec_a != spec_b:
        return None
    pairs = [(x, y) for x, y in zip(leaves_a, leaves_b, strict=True) if isinstance(x, torch.Tensor)]
    if any(not isinstance(y, torch.Tensor) or x.shape != y.shape for x, y in pairs):
        return None
    return pairs


def _weights_line(info: ModelInfo) -> str:
    """The checkpoint (and its entry: raw or EMA) the input's weights came from; '' when none."""
    from netsurgeon.models.load import describe_weights

    return describe_weights(info) if info.checkpoint else ""


def _copy_modes(original: nn.Module, result: nn.Module) -> None:
    """Give every module of the result the train/eval mode of the module at the same path (new ones: the root's)."""
    modes = {path: m.training for path, m in original.named_modules()}
    for path, module in result.named_modules():
        module.training = modes.get(path, original.training)


def plan(
    model: nn.Module,
    passes: PassLike | Sequence[PassLike],
    *,
    example_input: torch.Tensor | None = None,
    input_size: Sequence[int] | None = None,
    allow_reapply: bool = False,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> SurgeryReport:
    """Dry run: the report of what ``apply`` would change, without running the models (no probe check).

    Passes that never edit a tensor in place run on a copy of the modules that shares the caller's weights,
    so a plan costs little more than tracing the model; ``model`` is never modified.
    """
    return _surgery(model, passes, example_input=example_input, input_size=input_size, verify=False,
                    allow_reapply=allow_reapply, data=data, allow_violation=False, dry_run=True).report


def _versions(model: nn.Module) -> list[int]:
    """Every parameter's and buffer's in-place version counter (what a dry run must leave unchanged)."""
    return [t._version for t in model.parameters()] + [t._version for t in model.buffers()]


@torch.no_grad()
def _verify(
    reference: torch.Tensor,
    modified: nn.Module,
    x: torch.Tensor,
    before_state: dict[str, torch.Tensor],
    after_state: dict[str, torch.Tensor],
    kept: list[str],
    exact: bool,
) -> Verification:
    with in_mode(modified, False):
        b = modified(x)
    pairs = _output_pairs(reference, b)  # a tensor, or the leaves of a list/tuple/dict output (timm features_only)
    if pairs is None:
        diff = None
    else:
        diff = torch.cat([(a.float() - b.float()).abs().flatten() for a, b in pairs]) if pairs else torch.zeros(0)
    max_diff = float(diff.max()) if diff is not None and diff.numel() else 0.0 if diff is not None else float("inf")
    state_unchanged = all(torch.equal(before_state[k], after_state[k]) for k in kept
                          if before_state[k].shape == after_state[k].shape)
    largest = max((float(a.float().abs().max()) for a, _ in pairs or [] if a.numel()), default=0.0)
    bound = EXACT_ATOL * max(1.0, largest)
    ok = max_diff <= bound if exact else state_unchanged
    return Verification(
        probe_shape=list(x.shape),
        max_abs_diff=max_diff,
        mean_abs_diff=float(diff.mean()) if diff is not None and diff.numel() else 0.0 if diff is not None
        else float("inf"),
        outputs_equal=pairs is not None and all(torch.equal(a, b) for a, b in pairs),
        state_unchanged=state_unchanged,
        contract=Contract.EXACT.value if exact else Contract.CHANGES_FUNCTION.value,
        ok=ok,
    )
