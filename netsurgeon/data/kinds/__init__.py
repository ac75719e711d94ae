"""Data kinds: one module per kind of data spec, each registering its :class:`DataKind` once (see
:mod:`netsurgeon.data.kinds.base`). Importing this package registers the built-in kinds, in this order."""

from netsurgeon.data.kinds import digits, fashion_mnist, folder, torchvision  # noqa: F401 (each registers its kind)
from netsurgeon.data.kinds.base import (
    DataKind,
    DataSpec,
    data_grammar,
    data_help,
    data_kind,
    data_kinds,
    register_data_kind,
    unregister_data_kind,
)

__all__ = ["DataKind", "DataSpec", "data_grammar", "data_help", "data_kind", "data_kinds", "register_data_kind",
           "unregister_data_kind"]
