"""Tests for trainables.core.models: shapes, the mix hook, errors, channels_last, backward.

Batches are tiny (B=2) and each model is built once per shape, so the file runs in seconds
on a 2-core CPU.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from trainables.core.models import MODELS, MixNet, ResNet, build_model


def param_count(model: nn.Module) -> int:
    """Number of parameters (trainable or not; BN running stats are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())

C = 10  # classes
B = 2  # batch size: BatchNorm in train mode needs > 1 sample

CASES = [
    ("linear", (1, 8, 8)),
    ("linear", (3, 32, 32)),
    ("mlp", (1, 8, 8)),
    ("mlp", (1, 28, 28)),
    ("mlp", (3, 32, 32)),
    ("cnn", (1, 8, 8)),
    ("cnn", (1, 28, 28)),
    ("cnn", (3, 32, 32)),
    ("resnet18", (3, 32, 32)),
    ("resnet34", (3, 32, 32)),
]
IDS = [f"{n}-{'x'.join(map(str, s))}" for n, s in CASES]


@functools.lru_cache(maxsize=None)
def _model(name: str, shape: tuple[int, int, int]) -> MixNet:
    # Cached: building ResNet-34 costs more than running it on two images.
    torch.manual_seed(0)
    return build_model(name, shape, C, hidden=32)


def _x(shape: tuple[int, int, int], b: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, *shape, generator=g)


@pytest.mark.parametrize(("name", "shape"), CASES, ids=IDS)
def test_logits_shape(name, shape):
    model = _model(name, shape).train()
    assert model(_x(shape)).shape == (B, C)


@pytest.mark.parametrize(("name", "shape"), CASES, ids=IDS)
@torch.no_grad()
def test_mix_at_every_layer(name, shape):
    model = _model(name, shape).eval()
    x = _x(shape)
    plain = model(x)
    for layer in range(model.num_mix_layers):
        # A mix that changes the batch size, as Multi-Mix does ((2B, ...) -> (B*K, ...)).
        grown = model(x, mix=lambda h: torch.cat([h, h[:1]]), layer=layer)
        assert grown.shape == (B + 1, C), layer
        # Identity mix runs the very same ops, so the logits match exactly.
        same = model(x, mix=lambda h: h, layer=layer)
        assert torch.equal(same, plain), layer


def test_num_mix_layers():
    assert _model("linear", (1, 8, 8)).num_mix_layers == 1  # the input only: no hidden layer
    assert param_count(_model("linear", (1, 8, 8))) == 64 * C + C
    assert _model("mlp", (1, 8, 8)).num_mix_layers == 3
    assert _model("cnn", (1, 8, 8)).num_mix_layers == 3
    assert _model("resnet18", (3, 32, 32)).num_mix_layers == 5
    assert _model("resnet34", (3, 32, 32)).num_mix_layers == 5
    for name, shape in CASES:  # never inside the classifier block
        m = _model(name, shape)
        assert m.num_mix_layers <= len(m.blocks)
        last = m.blocks[-1]
        assert isinstance(last[-1] if isinstance(last, nn.Sequential) else last, nn.Linear)


@torch.no_grad()
def test_resnet_mix_sees_documented_shapes():
    model = _model("resnet18", (3, 32, 32)).eval()
    seen = []

    def record(h):
        seen.append(tuple(h.shape[1:]))
        return h

    for layer in range(model.num_mix_layers):
        model(_x((3, 32, 32)), mix=record, layer=layer)
    # input, after stem, after layer1, layer2, layer3
    assert seen == [(3, 32, 32), (64, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)]


@pytest.mark.parametrize("layer", [-1, 3, 10])
def test_layer_out_of_range(layer):
    model = _model("mlp", (1, 8, 8))
    with pytest.raises(ValueError, match="mix layer"):
        model(_x((1, 8, 8)), mix=lambda h: h, layer=layer)
    with pytest.raises(ValueError, match="mix layer"):
        model(_x((1, 8, 8)), layer=layer)


def test_resnet_layer_out_of_range():
    with pytest.raises(ValueError):
        _model("resnet18", (3, 32, 32))(_x((3, 32, 32)), mix=lambda h: h, layer=5)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_model("vgg", (3, 32, 32), C)
    for name in ["auto", *MODELS]:
        assert name in str(err.value)
    assert set(MODELS) == {"linear", "mlp", "mlp1", "cnn", "resnet18", "resnet34"}


def test_mlp1_is_the_cll_papers_784_500_10_without_batchnorm():
    m = build_model("mlp1", (1, 28, 28), 10, hidden=500)
    assert param_count(m) == 784 * 500 + 500 + 500 * 10 + 10
    assert not any(isinstance(x, torch.nn.BatchNorm1d) for x in m.modules()) and m.num_mix_layers == 2
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_auto():
    assert type(build_model("auto", (1, 8, 8), C, hidden=8)).__name__ == "MLP"
    assert type(build_model("auto", (1, 28, 28), C, hidden=8)).__name__ == "MLP"
    # RGB and larger grayscale images go to ResNet-18 (depths 2,2,2,2).
    for shape in [(3, 32, 32), (1, 32, 32)]:
        m = build_model("auto", shape, C)
        assert isinstance(m, ResNet)
        assert [len(stage) for stage in m.blocks[1:5]] == [2, 2, 2, 2]


def test_bad_arguments():
    with pytest.raises(ValueError):
        build_model("mlp", (8, 8), C)
    with pytest.raises(ValueError):
        build_model("mlp", (1, 8, 8), 0)
    with pytest.raises(ValueError):
        build_model("mlp", (1, 8, 8), C, hidden=0)
    with pytest.raises(ValueError):
        build_model("cnn", (1, 2, 2), C)


# 3-channel inputs: with one channel, channels_last has the same layout as contiguous.
@pytest.mark.parametrize(
    ("name", "shape"), [CASES[i] for i in (2, 5, 6)], ids=[IDS[i] for i in (2, 5, 6)]
)
@torch.no_grad()
def test_channels_last_matches_contiguous(name, shape):
    model = _model(name, shape).eval()
    x = _x(shape)
    ref = model(x)  # (B, C)
    model_cl = model.to(memory_format=torch.channels_last)
    try:
        out = model_cl(x.to(memory_format=torch.channels_last))
    finally:
        model.to(memory_format=torch.contiguous_format)  # the cached model is shared
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_resnet18_param_count():
    # CIFAR ResNet-18 with 10 classes: 11,173,962 parameters.
    n = param_count(_model("resnet18", (3, 32, 32)))
    assert abs(n - 11.2e6) < 0.05e6
    assert param_count(nn.Linear(3, 2)) == 8


@pytest.mark.parametrize(
    ("name", "shape"), [CASES[i] for i in (0, 3, 6)], ids=[IDS[i] for i in (0, 3, 6)]
)
def test_backward(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, C, hidden=32).train()
    layer = model.num_mix_layers - 1  # deepest mix: every parameter still gets a gradient
    logits = model(_x(shape), mix=lambda h: 0.3 * h + 0.7 * h.flip(0), layer=layer)
    logits.logsumexp(1).mean().backward()
    for p_name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), p_name


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_autocast_bf16(name):
    model = _model(name, (1, 8, 8)).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_x((1, 8, 8)), mix=lambda h: h.flip(0), layer=1)
    assert out.shape == (B, C)
    assert torch.isfinite(out.float()).all()
