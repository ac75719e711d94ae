"""Data sources for data-driven passes and fine-tuning, all read locally.

A data spec is one string:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), always
  available offline: the embedded default. Split 80/20 with a fixed permutation.
* ``fashion-mnist`` or ``fashion-mnist:DIR``: Fashion-MNIST read directly from its four IDX ``.gz``
  files (``train-images-idx3-ubyte.gz`` ...). Without DIR, the places Debian's
  ``dataset-fashion-mnist`` package installs to are searched.
* ``folder:DIR``: an image folder (``DIR/train/CLASS/*.png`` and ``DIR/val/...``; or ``DIR/CLASS/*``,
  used for both splits).
* ``torchvision:NAME:ROOT``: a torchvision dataset (CIFAR10, CIFAR100, SVHN, STL10, MNIST,
  FashionMNIST, KMNIST, EMNIST, ...) already downloaded under ROOT; ``download=True`` in Python.

Every source yields ``(image, label)`` with the image as a float tensor of the model's input size, grey
images repeated to the model's channel count, normalised with the model's mean/std
(``model_normalization``: timm's pretrained config, or the torchvision weights' transforms). By default
the whole image is resized; ``netsurgeon.data.transforms`` builds the model's own evaluation
preprocessing and the training augmentation presets that fine-tuning uses (``load_dataset(...,
transform=...)``). ``surgery_loader`` builds the batches a data-driven pass measures on.
"""

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

__all__ = ["Augment", "DataConfig", "DataSpec", "ImageTransform", "SeededSamples", "check_label_range",
           "check_samples", "count_classes", "draw_seed", "eval_transform", "load_dataset", "make_loader",
           "model_data_config", "model_normalization", "seeded", "surgery_loader", "train_transform"]
