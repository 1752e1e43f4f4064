"""Tests of renyilib.experiments.models: parameter counts, torchvision equivalence, forward/backward, seeds."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from renyilib.experiments.models import MODELS, build_model, count_parameters

# Published / closed-form parameter counts at width 1 (10 classes unless given).
#   resnet18 / resnet34 (CIFAR): the widely quoted 11,173,962 / 21,282,122 (kuangliu/pytorch-cifar).
#   resnet20 / resnet56 option A: 0.27M / 0.85M (He et al. 2016, Table 6): 269,722 / 853,018.
#   wrn28-10: 36.5M (Zagoruyko & Komodakis 2016): 36,479,194.
#   resnet50 (CIFAR stem, 200 classes): torchvision resnet50 without its head, 23,508,032,
#     minus the 7x7x3x64 stem conv (9,408) plus a 3x3x3x64 one (1,728), plus 2048*200+200.
#   resnet18-tiny (200 classes): torchvision resnet18 (11,689,512) with a 512*200+200 head.
#   lenet5 without BN/dropout: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
#   digits-cnn: (1*8*9+8) + (8*16*9+16) + (16*32*9+32) + (128*10+10) = 7,178.
#   mlp 64-64-64-10: (64*64+64)*2 + 64*10+10 = 8,970.
COUNTS = [
    ("resnet18", 10, {}, 11_173_962),
    ("resnet34", 10, {}, 21_282_122),
    ("resnet20", 10, {}, 269_722),
    ("resnet56", 10, {}, 853_018),
    ("resnet20", 10, {"shortcut": "B"}, 269_722 + 16 * 32 + 64 + 32 * 64 + 128),
    ("wrn28-10", 10, {}, 36_479_194),
    ("resnet50", 200, {}, 23_508_032 - 9_408 + 1_728 + 2048 * 200 + 200),
    ("resnet18-tiny", 200, {"image_size": 64}, 11_689_512 - 513_000 + 512 * 200 + 200),
    (
        "lenet5",
        10,
        {"in_channels": 1, "image_size": 28, "batchnorm": False, "dropout": 0.0},
        61_706,
    ),
    ("digits-cnn", 10, {"in_channels": 1, "image_size": 8}, 7_178),
    ("mlp", 10, {"in_channels": 1, "image_size": 8}, 8_970),
]


def _vit_count(dim=512, depth=6, heads=8, dim_head=64, mlp=512, patch_dim=48, classes=10):
    """Closed-form parameter count of vit-pytorch's SimpleViT."""
    inner = heads * dim_head
    patch = 2 * patch_dim + patch_dim * dim + dim + 2 * dim  # LN, Linear, LN
    attn = 2 * dim + dim * 3 * inner + inner * dim  # LN, to_qkv, to_out (no biases)
    ff = 2 * dim + (dim * mlp + mlp) + (mlp * dim + dim)
    return patch + depth * (attn + ff) + 2 * dim + dim * classes + classes


@pytest.mark.parametrize(("name", "classes", "kw", "expected"), COUNTS)
def test_parameter_counts(name, classes, kw, expected):
    assert count_parameters(build_model(name, classes, **kw)) == expected


def test_vit_is_simplevit_with_closed_form_count():
    model = build_model("vit", 10)
    assert type(model).__name__ == "SimpleViT"
    assert count_parameters(model) == _vit_count() == 9_487_978
    small = build_model("vit", 10, width=0.125, in_channels=1, image_size=8, patch_size=2)
    assert count_parameters(small) == _vit_count(dim=64, dim_head=8, mlp=64, patch_dim=4)


def _copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy a state dict entry by entry in order (names differ, shapes must match)."""
    s, d = src.state_dict(), dst.state_dict()
    assert len(s) == len(d)
    new = {}
    for (_, sv), (dk, dv) in zip(s.items(), d.items()):
        assert sv.shape == dv.shape, dk
        new[dk] = sv
    dst.load_state_dict(new)


def _randomize_bn(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize(
    ("ours", "theirs", "stem", "size"),
    [
        ("resnet18-tiny", "resnet18", "standard", 32),
        ("resnet18", "resnet18", "cifar", 16),
        ("resnet34", "resnet34", "cifar", 16),
        ("resnet50", "resnet50", "cifar", 16),
    ],
)
def test_same_function_as_torchvision_resnet(ours, theirs, stem, size):
    """Tables 2/3 ResNets equal torchvision's (CIFAR ones with a 3x3/1 stem and no max pool).

    With the same weights (copied in state-dict order) and random BN running stats, the
    eval-mode outputs agree in float64 to 1e-10 relative: the same arithmetic up to
    summation order (rounding ~1e-16 per operation over ~50 layers).
    """
    torch.manual_seed(0)
    tv = getattr(torchvision.models, theirs)(num_classes=7)
    if stem == "cifar":
        tv.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        tv.maxpool = nn.Identity()
    _randomize_bn(tv, 1)
    model = build_model(ours, 7, image_size=size)
    _copy_by_order(tv, model)
    tv, model = tv.double().eval(), model.double().eval()
    x = torch.randn(
        2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        a, b = tv(x), model(x)
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-10 * a.abs().max().item())


def test_option_a_shortcut_subsamples_and_zero_pads():
    model = build_model("resnet20", 10, width=1.0)
    shortcut = model.layer2[0].shortcut  # 16 -> 32 channels, stride 2
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    out = shortcut(x)
    assert out.shape == (2, 32, 2, 2)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert torch.all(out[:, :8] == 0) and torch.all(out[:, 24:] == 0)


# Small variants for forward/backward: (name, kwargs, input shape). The ResNets pool
# adaptively, so 16x16 inputs exercise every layer at a quarter of the cost of 32x32.
SMALL = [
    ("resnet18", {"width": 0.125}, (3, 16, 16)),
    ("resnet34", {"width": 0.125}, (3, 16, 16)),
    ("resnet18-tiny", {"width": 0.125, "image_size": 32}, (3, 32, 32)),
    ("resnet20", {"width": 0.5}, (3, 16, 16)),
    ("resnet56", {"width": 0.25}, (3, 16, 16)),
    ("resnet50", {"width": 0.0625}, (3, 16, 16)),
    ("wrn28-10", {"width": 0.05}, (3, 16, 16)),
    ("vit", {"width": 0.125, "depth": 2, "image_size": 16}, (3, 16, 16)),
    ("lenet5", {"in_channels": 1, "image_size": 28}, (1, 28, 28)),
    ("mlp", {"in_channels": 1, "image_size": 8}, (1, 8, 8)),
    ("digits-cnn", {"in_channels": 1, "image_size": 8}, (1, 8, 8)),
    ("digits-cnn", {"in_channels": 1, "image_size": 8, "batchnorm": True}, (1, 8, 8)),
]


def test_every_registered_model_is_exercised():
    assert {name for name, _, _ in SMALL} == set(MODELS)


@pytest.mark.parametrize(
    ("name", "kw", "shape"), SMALL, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(SMALL)]
)
def test_forward_backward(name, kw, shape):
    torch.manual_seed(0)
    model = build_model(name, 5, **kw)
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.arange(3)).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    # Every weight of a conv / linear layer receives a non-zero gradient.
    for mname, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            assert m.weight.grad.abs().sum() > 0, mname


@pytest.mark.parametrize("name", ["resnet20", "vit", "digits-cnn", "lenet5"])
def test_init_is_deterministic_under_manual_seed(name):
    kw = {"in_channels": 1, "image_size": 8} if name == "digits-cnn" else {}
    if name == "lenet5":
        kw = {"in_channels": 1, "image_size": 28}
    if name == "vit":
        kw = {"width": 0.125, "depth": 1}
    torch.manual_seed(3)
    a = build_model(name, 10, **kw).state_dict()
    torch.manual_seed(3)
    b = build_model(name, 10, **kw).state_dict()
    torch.manual_seed(4)
    c = build_model(name, 10, **kw).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_wrn_block_layout_follows_homura():
    """Stride on the second 3x3 conv, 1x1 projection of the raw block input, no conv biases."""
    model = build_model("wrn28-10", 10, width=0.1)
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.shortcut.stride == (2, 2) and block.shortcut.kernel_size == (1, 1)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    # The shortcut reads x itself: with the residual branch zeroed, out = shortcut(x).
    with torch.no_grad():
        block.conv2.weight.zero_()
        x = torch.randn(2, block.conv1.in_channels, 8, 8)
        assert torch.equal(block(x), block.shortcut(x))
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 4


def test_width_multiplier_scales_channels():
    model = build_model("resnet20", 10, width=0.5)
    assert model.conv1.out_channels == 8
    assert model.fc.in_features == 32
    assert build_model("wrn28-10", 10, width=0.1).fc.in_features == 64
    assert build_model("resnet18", 10, width=0.25).fc.in_features == 128


def test_mlp_input_dim_for_tabular_data():
    model = build_model("mlp", 1, input_dim=10, hidden=(64, 64))  # the replication's FCNN
    assert model(torch.randn(3, 10)).shape == (3, 1)
    assert count_parameters(model) == (10 * 64 + 64) + (64 * 64 + 64) + (64 + 1)


def test_errors_name_the_argument():
    with pytest.raises(KeyError, match="unknown model name 'resnet19'"):
        build_model("resnet19", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet20", 0)
    with pytest.raises(ValueError, match="width"):
        build_model("resnet20", 10, width=-1)
    with pytest.raises(ValueError, match="in_channels"):
        build_model("resnet20", 10, in_channels=0)
    with pytest.raises(TypeError, match="does not take"):
        build_model("resnet20", 10, dropout=0.1)
    with pytest.raises(ValueError, match="shortcut"):
        build_model("resnet20", 10, shortcut="C")
    with pytest.raises(ValueError, match="patch_size"):
        build_model("vit", 10, image_size=30)
    with pytest.raises(ValueError, match="image_size"):
        build_model("lenet5", 10, image_size=8)


@pytest.mark.parametrize(
    ("name", "kw", "shape"), SMALL, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(SMALL)]
)
def test_layer_blocks_are_the_conv_and_linear_layers_in_forward_order(name, kw, shape):
    """hessian.layer_blocks: one block per conv/linear weight, input layer first, head last."""
    hessian = pytest.importorskip("renyilib.hessian")
    model = build_model(name, 5, **kw)
    blocks = hessian.layer_blocks(model, torch.zeros(2, *shape))
    names = list(blocks)
    assert names[-1] == "all"
    params = dict(model.named_parameters())
    assert blocks["all"] == list(params)
    layer_weights = {
        f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, nn.Conv2d | nn.Linear)
    }
    assert set(names[:-1]) == layer_weights
    assert all(blocks[b] == [b] for b in names[:-1])
    # The first layer reads the input; the last layer produces the logits.
    first, last = params[names[0]], params[names[-2]]
    expected_in = {"mlp": 64, "vit": 3 * 4 * 4}.get(name, shape[0])  # vit: 4x4 RGB patches
    assert first.shape[1] == expected_in
    assert last.shape[0] == 5
