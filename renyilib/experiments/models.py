"""Architectures of the paper (Appendix G.2, Tables 2 and 3) and CPU-scale models.

Every model is built by :func:`build_model` from a name in :data:`MODELS`::

    model = build_model("resnet18", num_classes=10)               # Table 2, CIFAR
    model = build_model("resnet20", num_classes=10)               # Table 3, He et al.
    model = build_model("resnet18", num_classes=10, width=0.25)   # CPU-scale variant
    model = build_model("digits-cnn", num_classes=10, in_channels=1, image_size=8)

``width`` multiplies every hidden channel count (and the transformer width),
so ``width=1`` is the paper's network and ``width=0.125`` a CPU-sized one with
the same depth and layer layout. Parameters use PyTorch's default
initialization, as in Appendix G.2 ("the neural networks are initialized by
the default initialization provided by PyTorch"), so ``torch.manual_seed``
before :func:`build_model` fixes the initial weights.

The models (parameter counts at ``width=1``, 10 classes unless noted):

* ``resnet18``: Table 2 ResNet18 (CIFAR): 3×3/64 stem, stride 1, no max pool,
  BasicBlocks [2, 2, 2, 2]; 11,173,962.
* ``resnet34``: Table 2 ResNet34 (CIFAR): as above with blocks [3, 4, 6, 3]; 21,282,122.
* ``resnet18-tiny``: Table 2 ResNet18 (TinyImageNet): 7×7/64 stem, stride 2, max pool
  3/2/1, blocks [2, 2, 2, 2] (torchvision's ResNet-18); 11,279,112 with 200 classes.
* ``resnet20``: Table 3 / He et al. (2016) CIFAR ResNet, 16/32/64 channels, 3 blocks
  per stage, option-A shortcuts; 269,722.
* ``resnet56``: as resnet20 with 9 blocks per stage; 853,018.
* ``resnet50``: Table 3 ResNet-50 (TinyImageNet): 3×3/64 stem, stride 1, no max pool,
  Bottlenecks [3, 4, 6, 3]; 23,910,152 with 200 classes.
* ``wrn28-10``: Table 3 WideResNet-28-10 (Zagoruyko & Komodakis 2016, homura's
  layout), pre-activation blocks, widths 160/320/640; 36,479,194.
* ``vit``: SimpleViT of ``vit-pytorch`` (Appendix G.2), patch 4, dim 512, depth 6,
  8 heads of 64, MLP 512; 9,487,978.
* ``lenet5``: LeNet-5 with BatchNorm and dropout 0.5 (the replication's FashionMNIST
  model, 28×28 input); 61,706 without BatchNorm.
* ``mlp``: fully connected ReLU network, hidden (64, 64); 8,970 on 8×8 digits.
* ``digits-cnn``: 3-conv CNN for 8×8 digits, optional BatchNorm; 7,178.

The paper does not give the SimpleViT configuration; ours is the common
CIFAR-10 setting of ``vit-pytorch`` (patch 4 on 32×32 images: 64 tokens).

For ResNet-20/56 the paper cites He et al. (2016), whose CIFAR networks use
option A shortcuts (stride-2 subsampling plus zero-padded channels, no
parameters). Option A gives the 0.27M / 0.85M parameters usually quoted;
``shortcut="B"`` (1×1 projection convolutions) is available and adds 2,752 /
2,752 parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MODELS",
    "build_model",
    "count_parameters",
    "CifarResNet",
    "ImageNetStyleResNet",
    "HeResNet",
    "WideResNet",
    "LeNet5",
    "MLP",
    "DigitsCNN",
]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _ch(channels: int, width: float) -> int:
    """Channel count ``channels · width``, rounded, at least 1."""
    return max(1, round(channels * width))


# --------------------------------------------------------------------------------------
# ResNet-18/34/50 (Tables 2 and 3)
# --------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and an identity or 1×1-projection shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1 (×4) bottleneck block of ResNet-50 (stride on the 3×3)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class _StagedResNet(nn.Module):
    """Stem, four stages of residual blocks (64/128/256/512 · width), global pool, linear head.

    Subclasses define the stem in :meth:`make_stem`.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        in_planes = _ch(64, width)
        self.stem = self.make_stem(in_channels, in_planes)
        stages = []
        for i, n in enumerate(num_blocks):
            planes = _ch(64 * 2**i, width)
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    @staticmethod
    def make_stem(in_channels: int, channels: int) -> nn.Module:
        """The stem mapping the input to ``channels`` feature maps."""
        raise TypeError("use CifarResNet or ImageNetStyleResNet, not the base class")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class CifarResNet(_StagedResNet):
    """ResNet for 32×32 inputs (Table 2 ResNet18/34, Table 3 ResNet-50).

    Stem: 3×3 convolution, 64·width channels, stride 1, padding 1, BatchNorm,
    ReLU, and no max pool; then four stages with strides 1, 2, 2, 2, adaptive
    average pooling to 1×1 and a linear layer.
    """

    @staticmethod
    def make_stem(in_channels: int, channels: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )


class ImageNetStyleResNet(_StagedResNet):
    """The standard ResNet stem (Table 2, ResNet18 for TinyImageNet).

    Stem: 7×7 convolution, 64·width channels, stride 2, padding 3, BatchNorm,
    ReLU, then max pool (kernel 3, stride 2, padding 1); the stages and head
    are those of :class:`CifarResNet`.
    """

    @staticmethod
    def make_stem(in_channels: int, channels: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )


# --------------------------------------------------------------------------------------
# ResNet-20/56 (He et al. 2016, Table 3)
# --------------------------------------------------------------------------------------


class _PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the extra channels."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        lo = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.extra - lo))


class _HeBlock(nn.Module):
    """BasicBlock of the CIFAR ResNets of He et al. with an option-A or option-B shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = _PadShortcut(in_planes, planes, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class HeResNet(nn.Module):
    """CIFAR ResNet-(6n+2) of He et al. (2016), Table 3 ResNet-20 (n=3) and ResNet-56 (n=9).

    3×3/16 stem (stride 1), three stages of ``n`` BasicBlocks with 16/32/64 · width
    channels (strides 1, 2, 2), global average pooling (the 8×8 pool of Table 3
    on 32×32 inputs) and a 64·width × classes linear layer.

    Args:
        depth: 6n + 2 (20, 32, 44, 56, 110, ...).
        num_classes: Output classes.
        in_channels: Input channels.
        width: Channel multiplier.
        shortcut: ``"A"`` (zero-padding identity, parameter-free, He et al.'s CIFAR
            choice) or ``"B"`` (1×1 projection when the shape changes).
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 56, ...), got {depth!r}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        n = (depth - 2) // 6
        c = _ch(16, width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        in_planes = c
        stages = []
        for i in range(3):
            planes = _ch(16 * 2**i, width)
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_HeBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


# --------------------------------------------------------------------------------------
# WideResNet-28-10 (Table 3)
# --------------------------------------------------------------------------------------


class _WideBlock(nn.Module):
    """Pre-activation wide block as in homura's ``wrn28_10`` (the paper's WRN, Appendix G.2).

    ``out = conv2(ReLU(BN(dropout(conv1(ReLU(BN(x))))))) + shortcut(x)``, the stride on
    ``conv2``, and ``shortcut`` the identity or, on a shape change, a 1×1 strided
    convolution of the raw input ``x``. No convolution has a bias.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(F.relu(self.bn1(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """WideResNet-d-k of Zagoruyko & Komodakis (2016); Table 3 uses d=28, k=10.

    3×3/16 stem, three stages of (d-4)/6 pre-activation blocks with 16k, 32k, 64k
    channels (· width; strides 1, 2, 2), final BN-ReLU, global average pooling
    (the 8×8 pool of Table 3) and a linear head: 36,479,194 parameters for
    WRN-28-10 on 10 classes. The block layout follows homura's ``wrn28_10``,
    which the paper uses (stride on the second convolution, projection shortcut
    from the block input); the initialization is PyTorch's default (Appendix G.2),
    not homura's Kaiming re-initialization.

    Args:
        depth: 6n + 4 (28 for WRN-28-10).
        widen_factor: k (10).
        num_classes: Output classes.
        in_channels: Input channels.
        width: Extra channel multiplier for CPU-scale variants.
        dropout: Dropout between the two convolutions of a block (0 in the paper).
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"depth must be 6n+4 with n >= 1 (e.g. 28), got {depth!r}")
        n = (depth - 4) // 6
        c = _ch(16, width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, stride=1, padding=1, bias=False)
        in_planes = c
        stages = []
        for i in range(3):
            planes = _ch(16 * 2**i * widen_factor, width)
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_WideBlock(in_planes, planes, stride, dropout))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(self.pool(x), 1))


# --------------------------------------------------------------------------------------
# Small models
# --------------------------------------------------------------------------------------


class LeNet5(nn.Module):
    """LeNet-5 as in the adaptive-sharpness replication (FashionMNIST, 28×28).

    conv5×5/6 (padding 2) → [BN] → ReLU → max pool 2 → conv5×5/16 → [BN] → ReLU →
    max pool 2 → FC 120 → ReLU → [dropout] → FC 84 → ReLU → [dropout] → FC classes.
    The flattened size follows from ``image_size`` (16·5·5 for 28×28 inputs).

    Args:
        num_classes: Output classes.
        in_channels: Input channels.
        image_size: Input side length (at least 12).
        width: Channel / hidden-unit multiplier.
        batchnorm: BatchNorm after both convolutions (the replication's model).
        dropout: Dropout after the first two FC layers (0.5 in the replication).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        width: float = 1.0,
        batchnorm: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        side = ((image_size + 4 - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"image_size must be at least 12 for lenet5, got {image_size!r}")
        c1, c2 = _ch(6, width), _ch(16, width)
        h1, h2 = _ch(120, width), _ch(84, width)

        def bn(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batchnorm else nn.Identity()

        def drop() -> nn.Module:
            return nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2),
            bn(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            bn(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * side * side, h1),
            nn.ReLU(),
            drop(),
            nn.Linear(h1, h2),
            nn.ReLU(),
            drop(),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Fully connected ReLU network: flatten → Linear/ReLU per hidden layer → Linear.

    Args:
        input_dim: Number of input features (images are flattened).
        num_classes: Output units (1 for a scalar regression such as Abalone).
        hidden: Hidden layer sizes (before the width multiplier).
        width: Hidden-unit multiplier.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden: Sequence[int] = (64, 64),
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"input_dim must be a positive int, got {input_dim!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        prev = input_dim
        for h in hidden:
            h = _ch(int(h), width)
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        layers.append(nn.Linear(prev, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DigitsCNN(nn.Module):
    """Small CNN for the 8×8 scikit-learn digits (7,178 parameters at width 1).

    conv3×3/8 (8×8) → conv3×3/16 stride 2 (4×4) → conv3×3/32 stride 2 (2×2), each
    followed by [BatchNorm] and ReLU, then flatten (32·2·2) → linear.

    Args:
        num_classes: Output classes.
        in_channels: Input channels.
        image_size: Input side length (8 for digits).
        width: Channel multiplier.
        batchnorm: BatchNorm after every convolution (off by default, so the loss
            Hessian in train and eval mode is the same function of the weights).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 8,
        width: float = 1.0,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        chans = [in_channels, _ch(8, width), _ch(16, width), _ch(32, width)]
        layers: list[nn.Module] = []
        side = image_size
        for i, stride in enumerate((1, 2, 2)):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 3, stride=stride, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(chans[i + 1]))
            layers.append(nn.ReLU())
            side = (side - 1) // stride + 1
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(chans[-1] * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------------------
# SimpleViT (vit-pytorch)
# --------------------------------------------------------------------------------------


def _simple_vit(
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: float,
    patch_size: int = 4,
    dim: int = 512,
    depth: int = 6,
    heads: int = 8,
    mlp_dim: int = 512,
) -> nn.Module:
    """SimpleViT of ``vit-pytorch`` (fixed 2-D sin-cos positions, mean pooling).

    ``dim`` and ``mlp_dim`` are multiplied by ``width``; each head has
    ``dim // heads`` channels, so ``width=1`` is the usual 64-channel head.
    """
    from vit_pytorch import SimpleViT

    if image_size % patch_size != 0:
        raise ValueError(
            f"image_size ({image_size}) must be divisible by patch_size ({patch_size}) for vit"
        )
    d = _ch(dim, width)
    if d % heads != 0:
        d = max(heads, d // heads * heads)
    return SimpleViT(
        image_size=image_size,
        patch_size=patch_size,
        num_classes=num_classes,
        dim=d,
        depth=depth,
        heads=heads,
        mlp_dim=_ch(mlp_dim, width),
        channels=in_channels,
        dim_head=d // heads,
    )


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def _resnet18(num_classes: int, in_channels: int, width: float, image_size: int) -> nn.Module:
    return CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, width)


def _resnet34(num_classes: int, in_channels: int, width: float, image_size: int) -> nn.Module:
    return CifarResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, width)


def _resnet50(num_classes: int, in_channels: int, width: float, image_size: int) -> nn.Module:
    return CifarResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width)


def _resnet18_tiny(num_classes: int, in_channels: int, width: float, image_size: int) -> nn.Module:
    return ImageNetStyleResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, width)


def _he(depth: int) -> Callable[..., nn.Module]:
    def make(
        num_classes: int, in_channels: int, width: float, image_size: int, shortcut: str = "A"
    ) -> nn.Module:
        return HeResNet(depth, num_classes, in_channels, width, shortcut)

    return make


def _wrn28_10(
    num_classes: int, in_channels: int, width: float, image_size: int, dropout: float = 0.0
) -> nn.Module:
    return WideResNet(28, 10, num_classes, in_channels, width, dropout)


def _vit(num_classes: int, in_channels: int, width: float, image_size: int, **kw: Any) -> nn.Module:
    return _simple_vit(num_classes, in_channels, image_size, width, **kw)


def _lenet5(
    num_classes: int,
    in_channels: int,
    width: float,
    image_size: int,
    batchnorm: bool = True,
    dropout: float = 0.5,
) -> nn.Module:
    return LeNet5(num_classes, in_channels, image_size, width, batchnorm, dropout)


def _mlp(
    num_classes: int,
    in_channels: int,
    width: float,
    image_size: int,
    hidden: Sequence[int] = (64, 64),
    input_dim: int | None = None,
) -> nn.Module:
    if input_dim is None:
        input_dim = in_channels * image_size * image_size
    return MLP(input_dim, num_classes, hidden, width)


def _digits_cnn(
    num_classes: int, in_channels: int, width: float, image_size: int, batchnorm: bool = False
) -> nn.Module:
    return DigitsCNN(num_classes, in_channels, image_size, width, batchnorm)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": _resnet18,
    "resnet34": _resnet34,
    "resnet18-tiny": _resnet18_tiny,
    "resnet20": _he(20),
    "resnet56": _he(56),
    "resnet50": _resnet50,
    "wrn28-10": _wrn28_10,
    "vit": _vit,
    "lenet5": _lenet5,
    "mlp": _mlp,
    "digits-cnn": _digits_cnn,
}
"""Model name → factory ``(num_classes, in_channels, width, image_size, **kw) -> nn.Module``."""


def build_model(
    name: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    width: float = 1.0,
    image_size: int = 32,
    **kw: Any,
) -> nn.Module:
    """Build a model of :data:`MODELS` with PyTorch's default initialization.

    Args:
        name: A key of :data:`MODELS` (``"resnet18"``, ``"resnet20"``, ``"digits-cnn"``, ...).
        num_classes: Number of outputs.
        in_channels: Input image channels (3 for CIFAR, 1 for digits / Fashion-MNIST).
        width: Channel multiplier; 1.0 is the paper's network.
        image_size: Input side length (used by models whose layer sizes depend on it:
            ``vit``, ``lenet5``, ``mlp``, ``digits-cnn``).
        **kw: Model-specific options: ``shortcut`` ("A"/"B") for resnet20/56,
            ``dropout`` for wrn28-10 and lenet5, ``batchnorm`` for lenet5 and
            digits-cnn, ``hidden``/``input_dim`` for mlp, ``patch_size``/``dim``/
            ``depth``/``heads``/``mlp_dim`` for vit.

    Returns:
        The model (on the CPU, in training mode). Move it with ``.to(device)``.

    Raises:
        KeyError: Unknown ``name``.
        ValueError: Non-positive ``num_classes``, ``in_channels``, ``width`` or ``image_size``.
        TypeError: An option the model does not take.
    """
    if name not in MODELS:
        raise KeyError(f"unknown model name {name!r}; known: {sorted(MODELS)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if not (isinstance(width, int | float) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    try:
        return MODELS[name](num_classes, in_channels, float(width), image_size, **kw)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise TypeError(f"model {name!r} does not take option(s) {sorted(kw)}: {err}") from err
        raise
