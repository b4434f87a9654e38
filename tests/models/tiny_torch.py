"""The tiny PyTorch CNN the tests build, in one place; also ``tests.models.tiny_torch:tiny_cnn`` for export.

>>> tiny_cnn()                                   # conv(8,/2)-relu-conv(16,/2)-relu-pool-linear(10), RGB in
>>> tiny_cnn(4, widths=(16, 32, 64), strides=(1, 2, 1), batchnorm=True)   # the pruning tests' variant
"""

from __future__ import annotations

from typing import Sequence


def tiny_cnn(num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (8, 16),
             strides: Sequence[int] = (2, 2), batchnorm: bool = False, seed: int = 0):
    """3x3 conv blocks of ``widths`` channels and ``strides``, ReLU, global average pool, one linear layer.

    Any input size works (the pool is adaptive). ``batchnorm``: a BatchNorm after every conv, whose bias
    it makes redundant (convs then have none), as torchvision's blocks and structured pruning expect.
    Seeded, in eval mode: the same arguments give the same weights.
    """
    import torch
    from torch import nn

    if len(widths) != len(strides) or not widths:
        raise ValueError(f"widths and strides: one stride per conv, got {list(widths)} and {list(strides)}")
    torch.manual_seed(seed)
    layers: list = []
    cin = in_channels
    for width, stride in zip(widths, strides):
        layers.append(nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU())
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers).eval()


def not_a_module():
    return "a string"
