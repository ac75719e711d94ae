"""Building library models: name resolution, checkpoints, provenance (artifacts: ``netsurgeon.loading``)."""

from netsurgeon.models.info import ModelInfo, get_info
from netsurgeon.models.load import load_from_spec, resolve_spec

__all__ = ["ModelInfo", "get_info", "load_from_spec", "resolve_spec"]
