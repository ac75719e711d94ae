"""``load_model``: the one public entry point for library models and netsurgeon artifacts.

A spec (``timm:NAME``, ``torchvision:NAME``, a bare ``NAME``, ``netsurgeon:NAME``) is built by
:func:`netsurgeon.models.load.load_from_spec`. An artifact (``out/model.safetensors`` or ``out/``) is
rebuilt from its header alone by :func:`netsurgeon.export.artifact.load_artifact`, which replays the
recorded passes through ``apply``: that is why this dispatch lives here, above ``api`` and ``export``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from netsurgeon.errors import ArtifactError
from netsurgeon.export.artifact import load_artifact
from netsurgeon.models.load import check_spec, is_artifact_path, load_from_spec

__all__ = ["load_model"]


def load_model(
    spec: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    num_classes: int | None = None,
    pretrained: bool = False,
    input_size: Sequence[int] | None = None,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a model and load its weights, or rebuild an artifact; returns an ``nn.Module`` in eval mode.

    Args:
        spec: ``timm:NAME``, ``torchvision:NAME``, a bare ``NAME``, ``netsurgeon:NAME``, or an artifact
            path (``out/model.safetensors`` or ``out/``).
        checkpoint, num_classes, pretrained, input_size, weights (``"raw"``/``"ema"``), kwargs: see
            :func:`netsurgeon.models.load.load_from_spec` (not for artifacts, which carry their own).

    Raises:
        UnknownNameError, CheckpointError, PretrainedUnavailableError, ArtifactError, ConfigError.
    """
    text = check_spec(spec)
    if is_artifact_path(text):
        if checkpoint is not None or pretrained or input_size is not None or num_classes is not None or \
                weights is not None:
            raise ArtifactError("an artifact carries its own weights, head and input size; do not pass checkpoint, "
                                "pretrained, num_classes, input_size or weights.")
        return load_artifact(text)
    return load_from_spec(text, checkpoint=checkpoint, num_classes=num_classes, pretrained=pretrained,
                          input_size=input_size, weights=weights, **kwargs)
