"""The optimizers ``optimizer=`` names: timm's, built by ``timm.optim.create_optimizer_v2`` over the loop's groups.

Every name ``timm.optim.list_optimizers()`` gives is valid (case does not matter), with one alias kept from before
timm built the optimizer: ``sgd`` is plain momentum SGD (timm's ``momentum``; timm's own ``sgd`` is Nesterov, here
``nesterov``). Each optimizer keeps its own defaults (Lion's betas...); ``momentum`` reaches only those that have a
momentum, and ``optimizer_args`` the optimizer's own keyword arguments, checked against its constructor.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from netsurgeon.errors import ConfigError

__all__ = ["OWN_SETTINGS", "check_available", "check_optimizer", "create_optimizer", "optimizer_names"]

#: netsurgeon's names that mean another timm optimizer than timm's own name does
ALIASES = {"sgd": "momentum"}
#: keyword arguments the loop sets from settings of their own (optimizer_args may not give them)
OWN_SETTINGS = ("lr", "weight_decay", "momentum")


@functools.cache
def optimizer_names() -> tuple[str, ...]:
    """Every name ``optimizer=`` takes: timm's (lower case), but its second-order ones (adahessian: the loop's
    backward pass makes no graph of the gradients)."""
    from timm.optim import get_optimizer_info, list_optimizers

    return tuple(n for n in list_optimizers() if not get_optimizer_info(n).second_order)


def _info(name: str):  # noqa: ANN202 (timm.optim.OptimInfo)
    from timm.optim import get_optimizer_info

    return get_optimizer_info(ALIASES.get(name, name))


def _parameters(opt_class: Any) -> list[str]:
    """The keyword arguments an optimizer class takes besides ``params``."""
    signature = inspect.signature(opt_class.__init__ if inspect.isclass(opt_class) else opt_class)
    return [p.name for p in signature.parameters.values() if p.name not in ("self", "params")
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def check_optimizer(name: str, args: Mapping[str, Any]) -> str | None:
    """The problem with ``optimizer=name`` and its ``optimizer_args`` (a one-line message), or None.

    Uses timm's registry only: an optimizer from an optional package (bitsandbytes, apex) is checked when it is
    built (:func:`create_optimizer`), so a config reads back on any machine."""
    from timm.optim import list_optimizers

    if name in list_optimizers() and name not in optimizer_names():
        return (f"optimizer {name!r} is a second-order optimizer (it needs backward passes with create_graph), "
                "which the loop does not make; choose another optimizer.")
    if name not in optimizer_names():
        close = difflib.get_close_matches(name, optimizer_names(), n=3, cutoff=0.6)
        nearest = f" (closest: {', '.join(close)})" if close else ""
        return (f"optimizer {name!r} is not a timm optimizer{nearest}; use one of: {', '.join(optimizer_names())} "
                "(sgd is plain momentum SGD, nesterov Nesterov's).")
    info = _info(name)
    own = [k for k in args if k in OWN_SETTINGS]
    if own:
        return (f"optimizer_args {own[0]!r} is a setting of its own: use --set {own[0]}=... instead "
                "(a recipe's finetune key).")
    if isinstance(info.opt_class, str) or not args:  # an optional package's class: checked when built
        return None
    valid = [p for p in _parameters(info.opt_class) if p not in OWN_SETTINGS]
    unknown = [k for k in args if k not in valid]
    if unknown:
        return (f"optimizer_args {unknown[0]!r} is not an argument of {name} ({info.opt_class.__name__}); "
                f"valid: {', '.join(valid)}.")
    try:  # the values, on one stand-in parameter (the constructor checks them; no step is taken)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            create_optimizer([{"params": [torch.zeros(1, requires_grad=True)]}], name, lr=1.0, momentum=0.9,
                             args=args)
    except ConfigError as err:
        return str(err)
    return None


def check_available(name: str) -> None:
    """Refuse, in one line, an optimizer whose package is missing here (bitsandbytes and apex need a GPU too)."""
    from timm.optim import get_optimizer_class

    try:
        get_optimizer_class(ALIASES.get(name, name), bind_defaults=False)
    except (ImportError, AssertionError) as err:  # timm asserts CUDA for bitsandbytes and apex optimizers
        raise ConfigError(f"optimizer {name!r} is not available here ({err}); install what it needs, or choose "
                          "another optimizer.") from None


def create_optimizer(groups: Sequence[dict[str, Any]], name: str, *, lr: float, momentum: float,
                     args: Mapping[str, Any]) -> torch.optim.Optimizer:
    """timm's ``name`` optimizer over ``groups`` as given (each group's lr and weight decay are kept: timm does
    not regroup them), with ``momentum`` where the optimizer has one and ``args`` as its keyword arguments."""
    from timm.optim import create_optimizer_v2

    check_available(name)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    try:
        return create_optimizer_v2(list(groups), ALIASES.get(name, name), lr=lr, momentum=momentum,
                                   filter_bias_and_bn=False, **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"optimizer {name!r} refuses its settings (optimizer_args {dict(args)}): "
                          f"{str(err).splitlines()[0]}") from None
