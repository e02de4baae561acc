"""Models for mixtune: MLP, small CNN and CIFAR-style ResNet-18/34, all split into blocks.

Every model is a `MixNet`: an `nn.ModuleList` of blocks applied in order, the last one ending
in the linear classifier. Splitting the network this way is what manifold mixup needs
(Verma et al., "Manifold Mixup", ICML 2019): `forward(x, mix, layer)` runs the first `layer`
blocks, hands the hidden tensor to `mix` (which may change the batch size, e.g. Multi-Mix
turns 2B paired rows into B*K mixtures), then runs the rest. Layer 0 is the raw input, so
input mixup is the same code path.

Nothing here is dtype- or device-specific: the caller moves the model, picks
`channels_last` and wraps the forward in `torch.autocast` as it likes.

Mix layers per model (`num_mix_layers`, index = input of that block):
    mlp       3   0 input | 1 after hidden layer 1 | 2 after hidden layer 2 (the classifier's input)
    mlp1      2   0 input | 1 after the hidden layer (the classifier's input)
    cnn       3   0 input | 1 after stage 1 | 2 after stage 2 (pooled, before global pool + linear)
    resnet*   5   0 input | 1 after stem | 2 after layer1 | 3 after layer2 | 4 after layer3
For the ResNets, Manifold Mixup's paper mixes at {input, layer1, layer2} = indices {0, 2, 3};
indices 1 and 4 are kept so a search can try them. Mixing after layer4 (input of the
pool + linear head) is not offered: it is one linear map away from the logits.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

__all__ = ["MixNet", "MLP", "MLP1", "SmallCNN", "ResNet", "MODELS", "build_model"]

MixFn = Callable[[Tensor], Tensor]


class MixNet(nn.Module):
    """A network as an ordered list of blocks; the last block ends in the classifier.

    `num_mix_layers` = how many block inputs manifold mixup may mix: indices
    0 .. num_mix_layers-1, index 0 being the raw input. It is at most len(blocks) so that
    mixing never happens inside the classifier block.
    """

    def __init__(self, blocks: list[nn.Module], num_mix_layers: int) -> None:
        super().__init__()
        if not 1 <= num_mix_layers <= len(blocks):
            raise ValueError(f"num_mix_layers must be in [1, {len(blocks)}], got {num_mix_layers}")
        self.blocks = nn.ModuleList(blocks)
        self.num_mix_layers = num_mix_layers

    def forward(self, x: Tensor, mix: MixFn | None = None, layer: int = 0) -> Tensor:
        """Logits (B', num_classes), where B' is the batch size `mix` returns (B if no mix)."""
        # Checked even without `mix` so a wrong layer fails on the first call, not silently.
        if not 0 <= layer < self.num_mix_layers:
            raise ValueError(
                f"mix layer must be in [0, {self.num_mix_layers}) for "
                f"{type(self).__name__}, got {layer}"
            )
        h = x
        for i, block in enumerate(self.blocks):
            if i == layer and mix is not None:
                h = mix(h)  # (B, ...) -> (B', ...), same feature shape
            h = block(h)
        return h


# ---------------------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------------------


def _dense(d_in: int, d_out: int) -> nn.Sequential:
    # bias=False: BatchNorm's shift makes a Linear bias redundant.
    return nn.Sequential(
        nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)
    )


class MLP(MixNet):
    """Flatten -> [Linear, BN1d, ReLU] x 2 -> Linear. Blocks: hidden1, hidden2, classifier."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> None:
        c, h, w = in_shape
        blocks = [
            nn.Sequential(nn.Flatten(), *_dense(c * h * w, hidden)),  # (B, C, H, W) -> (B, hidden)
            _dense(hidden, hidden),  # (B, hidden) -> (B, hidden)
            nn.Linear(hidden, num_classes),  # (B, hidden) -> (B, num_classes)
        ]
        # All three block inputs are mixable: input, hidden1, hidden2 (the last is the
        # classifier's input, the deepest representation manifold mixup can use).
        super().__init__(blocks, num_mix_layers=3)


class MLP1(MixNet):
    """Flatten -> Linear -> ReLU -> Linear, no BatchNorm: the CLL papers' MLP (784-500-10 with hidden=500).

    Ishida et al. (takashiishida/comp) and Mai & Lin (maitanha/cll_ot) train this one. Blocks:
    hidden, classifier; mixable layers: input, hidden.
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, hidden: int = 500) -> None:
        c, h, w = in_shape
        blocks = [
            nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(inplace=True)),  # (B, hidden)
            nn.Linear(hidden, num_classes),
        ]
        super().__init__(blocks, num_mix_layers=2)


class Linear(MixNet):
    """Flatten -> Linear: the low-capacity end (the ICM paper's limitation: mixing hurts small models).

    One block, so the only mixable layer is the input (manifold mixing equals input mixing).
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> None:
        del hidden  # no hidden layer
        c, h, w = in_shape
        super().__init__([nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))], num_mix_layers=1)


# ---------------------------------------------------------------------------------------
# Small CNN
# ---------------------------------------------------------------------------------------


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(MixNet):
    """Two conv stages (2 conv-bn-relu + 2x2 max-pool each), then global avg pool + linear.

    Width w = max(8, hidden // 4) in stage 1 and 2w in stage 2. Two poolings take 8x8 to
    2x2, 28x28 to 7x7 and 32x32 to 8x8; the adaptive pool makes the head size-agnostic.
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> None:
        c, h, w = in_shape
        if min(h, w) < 4:
            raise ValueError(f"cnn needs inputs of at least 4x4 (two 2x2 poolings), got {h}x{w}")
        w1 = max(8, hidden // 4)  # a floor so a tiny `hidden` still gives a usable conv net
        w2 = 2 * w1
        blocks = [
            # (B, c, H, W) -> (B, w1, H/2, W/2)
            nn.Sequential(*_conv_bn_relu(c, w1), *_conv_bn_relu(w1, w1), nn.MaxPool2d(2)),
            # (B, w1, H/2, W/2) -> (B, w2, H/4, W/4)
            nn.Sequential(*_conv_bn_relu(w1, w2), *_conv_bn_relu(w2, w2), nn.MaxPool2d(2)),
            # (B, w2, H/4, W/4) -> (B, w2) -> (B, num_classes)
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w2, num_classes)),
        ]
        super().__init__(blocks, num_mix_layers=3)
        _init_convs(self)


# ---------------------------------------------------------------------------------------
# CIFAR-style ResNet (He et al. 2016; 3x3 stem, no max-pool, as in the Manifold Mixup code)
# ---------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 conv-bn layers with an identity (or 1x1 conv-bn) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        # Projection only when the shape changes, so the residual can be added.
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:  # (B, c_in, H, W) -> (B, c_out, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(MixNet):
    """Blocks: stem, layer1..layer4, head (global avg pool + flatten + linear)."""

    WIDTHS = (64, 128, 256, 512)

    def __init__(
        self, in_shape: tuple[int, int, int], num_classes: int, depths: tuple[int, int, int, int]
    ) -> None:
        c = in_shape[0]
        stem = nn.Sequential(*_conv_bn_relu(c, 64))  # (B, c, H, W) -> (B, 64, H, W)
        stages: list[nn.Module] = []
        c_in = 64
        for i, (width, depth) in enumerate(zip(self.WIDTHS, depths)):
            stride = 1 if i == 0 else 2  # 32x32 -> 32, 16, 8, 4
            layers = [BasicBlock(c_in, width, stride)]
            layers += [BasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = width
        # (B, 512, H/8, W/8) -> (B, 512) -> (B, num_classes)
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))
        # 5 mixable inputs: raw input, after stem, after layer1, layer2, layer3 (see module doc).
        super().__init__([stem, *stages, head], num_mix_layers=5)
        _init_convs(self)


def _init_convs(model: nn.Module) -> None:
    # Kaiming normal (fan_out, ReLU) for convs, as torchvision's ResNet; BN and Linear keep
    # PyTorch's defaults (BN weight 1, bias 0).
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


# ---------------------------------------------------------------------------------------
# Table and builder
# ---------------------------------------------------------------------------------------


def _mlp(in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> MixNet:
    return MLP(in_shape, num_classes, hidden)


def _cnn(in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> MixNet:
    return SmallCNN(in_shape, num_classes, hidden)


def _resnet18(in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> MixNet:
    del hidden  # ResNet widths are fixed (64..512); `hidden` is for the MLP and CNN
    return ResNet(in_shape, num_classes, (2, 2, 2, 2))


def _resnet34(in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> MixNet:
    del hidden
    return ResNet(in_shape, num_classes, (3, 4, 6, 3))


# name -> constructor(in_shape, num_classes, hidden=256); "auto" is resolved by build_model.
MODELS: dict[str, Callable[..., MixNet]] = {
    "linear": Linear,
    "mlp": _mlp,
    "mlp1": MLP1,
    "cnn": _cnn,
    "resnet18": _resnet18,
    "resnet34": _resnet34,
}


def auto_model_name(in_shape: tuple[int, int, int]) -> str:
    """mlp for 1-channel inputs up to 28x28 (digits, MNIST), resnet18 otherwise (CIFAR)."""
    c, h, w = in_shape
    return "mlp" if c == 1 and h * w <= 28 * 28 else "resnet18"


def build_model(
    name: str, in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256
) -> MixNet:
    """Build model `name` for inputs (C, H, W) = `in_shape` and `num_classes` outputs."""
    if name != "auto" and name not in MODELS:
        valid = ", ".join(["auto", *MODELS])
        raise ValueError(f"unknown model {name!r}; valid names: {valid}")
    in_shape = tuple(int(s) for s in in_shape)  # type: ignore[assignment]
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ValueError(f"in_shape must be (C, H, W) with positive sizes, got {in_shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    if name == "auto":
        name = auto_model_name(in_shape)
    return MODELS[name](in_shape, num_classes, hidden)
