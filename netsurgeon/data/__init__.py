"""Data sources for data-driven passes and fine-tuning, all read locally.

A data spec is one string, ``KIND`` or ``KIND:REST``, naming a registered data kind: ``digits`` (embedded,
always available offline), ``fashion-mnist``, ``folder`` and ``torchvision`` are built in, one module each in
``netsurgeon.data.kinds`` (its grammar, parser, loader, help line and offline advice); ``data_grammar()`` lists
them all, ``data_help()`` with their help lines. A new kind is one module and one :func:`register_data_kind`
line (a :class:`DataKind`); the CLI's ``--data`` help, the unknown-spec error and a recipe's checks read the
registry.

Every source yields ``(image, label)`` with the image as a float tensor of the model's input size, grey
images repeated to the model's channel count, normalised with the model's mean/std
(``model_normalization``: timm's pretrained config, or the torchvision weights' transforms). By default
the whole image is resized; ``netsurgeon.data.transforms`` builds the model's own evaluation
preprocessing and the training augmentation presets that fine-tuning uses (``load_dataset(...,
transform=...)``). ``surgery_loader`` builds the batches a data-driven pass measures on.
"""

from netsurgeon.data.kinds.base import (
    DataKind,
    data_grammar,
    data_help,
    data_kind,
    data_kinds,
    register_data_kind,
    unregister_data_kind,
)
from netsurgeon.data.sources import (
    DataSpec,
    ImageTransform,
    check_label_range,
    check_samples,
    count_classes,
    load_dataset,
    make_loader,
    model_normalization,
)
from netsurgeon.data.surgery import surgery_loader
from netsurgeon.data.transforms import (
    Augment,
    DataConfig,
    SeededSamples,
    draw_seed,
    eval_transform,
    model_data_config,
    seeded,
    train_transform,
)

__all__ = ["Augment", "DataConfig", "DataKind", "DataSpec", "ImageTransform", "SeededSamples", "check_label_range",
           "check_samples", "count_classes", "data_grammar", "data_help", "data_kind", "data_kinds", "draw_seed",
           "eval_transform", "load_dataset", "make_loader", "model_data_config", "model_normalization",
           "register_data_kind", "seeded", "surgery_loader", "train_transform", "unregister_data_kind"]
