"""Data kinds: one module per kind of data spec, each registering its :class:`~netsurgeon.data.kinds.base.DataKind`
once (the registry and ``DataSpec`` are in :mod:`netsurgeon.data.kinds.base`; ``netsurgeon.data`` exports them).
Importing this package, or any module in it, registers the built-in kinds, in this order."""

from netsurgeon.data.kinds import digits, fashion_mnist, folder, torchvision  # noqa: F401 (each registers its kind)
