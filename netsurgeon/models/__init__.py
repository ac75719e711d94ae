"""Loading models: name resolution, checkpoints, artifacts."""

from netsurgeon.models.info import ModelInfo, get_info
from netsurgeon.models.load import load_model, resolve_spec

__all__ = ["ModelInfo", "get_info", "load_model", "resolve_spec"]
