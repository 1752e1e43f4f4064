"""The exact Hessian diagonal against the diagonal of torch.func.hessian (float64).

Tolerance: 1e-10 relative to the largest diagonal entry of each tensor. Both
sides are sums of O(N·K) float64 terms of size O(1) that differ only in their
summation order (observed ~1e-15).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import dense_hessian, split_batches
from torch import nn

from renyilib.diagonal import ggn_identity_violation, hessian_diagonal

CE = nn.CrossEntropyLoss()
RTOL = 1e-10


def relu_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return (
        nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        .double()
        .eval()
    )


def relu_cnn(seed: int = 0, batchnorm: bool = False) -> nn.Module:
    """Conv-ReLU-maxpool-Conv-[BN]-ReLU-avgpool-Linear with biases on 1x8x8 inputs."""
    torch.manual_seed(seed)
    layers = [
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
    ]
    if batchnorm:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)]
    net = nn.Sequential(*layers).double()
    if batchnorm:  # non-trivial running statistics and affine parameters
        net.train()
        with torch.no_grad():
            net(torch.randn(32, 1, 8, 8, dtype=torch.float64) + 0.3)
            net[4].weight.uniform_(0.5, 1.5)
            net[4].bias.uniform_(-0.5, 0.5)
    return net.eval()


def data(shape: tuple[int, ...], n: int = 12, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def reference_diagonal(model: nn.Module, loss_fn, x, y) -> dict[str, torch.Tensor]:
    names = [n for n, _ in model.named_parameters()]
    diag = torch.diagonal(dense_hessian(model, loss_fn, x, y, names))
    out, offset = {}, 0
    for name, p in model.named_parameters():
        out[name] = diag[offset : offset + p.numel()].reshape(p.shape)
        offset += p.numel()
    return out


def assert_diagonal_close(got: dict, ref: dict) -> None:
    assert list(got) == list(ref)
    overall = max(float(r.abs().max()) for r in ref.values())
    for name in ref:
        assert got[name].shape == ref[name].shape
        # relative to the tensor's largest entry; a tensor whose Hessian vanishes
        # (a bias in front of batch-statistics BatchNorm) against 1e-8 of the overall
        scale = max(float(ref[name].abs().max()), 1e-8 * overall)
        err = float((got[name] - ref[name]).abs().max())
        assert err <= RTOL * scale, (name, err, scale)


@pytest.mark.parametrize(
    "make, shape",
    [(relu_mlp, (4,)), (relu_cnn, (1, 8, 8)), (lambda: relu_cnn(batchnorm=True), (1, 8, 8))],
    ids=["relu-mlp", "relu-cnn-maxpool", "relu-cnn-batchnorm-eval"],
)
def test_ggn_identity_matches_torch_func_hessian(make, shape):
    model = make()
    x, y = data(shape)
    assert ggn_identity_violation(model, CE, (x, y)) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the identity holds: no fallback warning
        got = hessian_diagonal(model, CE, (x, y), method="auto")
    assert_diagonal_close(got, reference_diagonal(model, CE, x, y))
    # the identity is label-free: other labels, same diagonal
    got2 = hessian_diagonal(model, CE, (x, (y + 1) % 3), method="ggn")
    for name in got:
        torch.testing.assert_close(got[name], got2[name], rtol=0, atol=1e-14)


def test_batches_small_chunks_and_label_smoothing():
    model = relu_cnn(seed=1)
    x, y = data((1, 8, 8), n=11)
    ref = reference_diagonal(model, CE, x, y)
    got = hessian_diagonal(model, CE, split_batches(x, y, 4), chunk=3)
    assert_diagonal_close(got, ref)
    smooth = nn.CrossEntropyLoss(label_smoothing=0.2)
    assert ggn_identity_violation(model, smooth, (x, y)) is None
    assert_diagonal_close(
        hessian_diagonal(model, smooth, (x, y)), reference_diagonal(model, smooth, x, y)
    )


def test_block_subset_and_hvp_method_match():
    model = relu_mlp(seed=2)
    x, y = data((4,))
    ref = reference_diagonal(model, CE, x, y)
    names = ["2.weight", "4.bias"]
    for method in ("ggn", "hvp"):
        got = hessian_diagonal(model, CE, (x, y), names, method=method, chunk=4)
        assert_diagonal_close(got, {n: ref[n] for n in names})


def tanh_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()


def ggn_diagonal_reference(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Brute-force Gauss-Newton diagonal (1/N) Σ_x diag(Jᵀ (diag p − ppᵀ) J) from full Jacobians."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    out = {k: torch.zeros_like(v) for k, v in params.items()}
    for xi in x:
        jac = torch.func.jacrev(
            lambda p, xi=xi: torch.func.functional_call(model, p, (xi[None],))[0]
        )(params)
        with torch.no_grad():
            p = torch.softmax(model(xi[None])[0], 0)
        hf = torch.diag(p) - torch.outer(p, p)
        for k, j in jac.items():
            jf = j.reshape(j.shape[0], -1)
            out[k] += torch.einsum("kn,kl,ln->n", jf, hf, jf).reshape(params[k].shape) / len(x)
    return out


def test_tanh_breaks_the_identity_and_the_fallback_is_exact():
    model = tanh_mlp()
    x, y = data((4,))
    ref = reference_diagonal(model, CE, x, y)
    ggn = ggn_diagonal_reference(model, x)
    # the identity is wrong for tanh: the GGN diagonal misses the f'' term
    gap = max(float((ggn[n] - ref[n]).abs().max() / ref[n].abs().max()) for n in ref)
    assert gap > 1e-2
    reason = ggn_identity_violation(model, CE, (x, y))
    assert reason is not None and "TanhBackward" in reason
    with pytest.raises(ValueError, match="Tanh"):
        hessian_diagonal(model, CE, (x, y), method="ggn")
    with pytest.warns(RuntimeWarning, match="Hessian-vector products"):
        got = hessian_diagonal(model, CE, (x, y))
    assert_diagonal_close(got, ref)


class FunctionalGelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


class SharedWeight(nn.Module):
    """The same Linear applied twice: f is quadratic in its weight."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(torch.relu(self.fc(x)))))


class Squared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return self.head(h * h)


@pytest.mark.parametrize(
    "make, match",
    [
        (FunctionalGelu, "Gelu"),
        (SharedWeight, "fc.weight"),
        (Squared, "Mul"),
        (lambda: nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 3)), "LayerNorm"),
        (lambda: nn.Sequential(nn.Linear(4, 5), nn.ELU(), nn.Linear(5, 3)), "Elu"),
        (lambda: nn.Sequential(nn.Linear(4, 5), nn.Softplus(), nn.Linear(5, 3)), "Softplus"),
        (lambda: nn.Sequential(nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 3)), "Sigmoid"),
        (
            lambda: nn.Sequential(
                nn.Linear(4, 5), nn.BatchNorm1d(5, track_running_stats=False), nn.Linear(5, 3)
            ),
            "batch statistics",
        ),
    ],
    ids=[
        "gelu-in-forward",
        "shared-weight",
        "product",
        "layernorm",
        "elu",
        "softplus",
        "sigmoid",
        "batchnorm-batch-stats",
    ],
)
def test_non_piecewise_linear_models_fall_back_exactly(make, match):
    torch.manual_seed(0)
    model = make().double().eval()
    x, y = data((4,), n=7)
    reason = ggn_identity_violation(model, CE, (x, y))
    assert reason is not None and match in reason
    with pytest.warns(RuntimeWarning):
        got = hessian_diagonal(model, CE, (x, y))
    assert_diagonal_close(got, reference_diagonal(model, CE, x, y))


def test_other_losses_fall_back_exactly():
    model = relu_mlp()
    x, y = data((4,))
    weighted = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))

    def penalized(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out, target) + (out**2).mean()

    for loss_fn, match in [(weighted, "weighted"), (penalized, "function")]:
        reason = ggn_identity_violation(model, loss_fn, (x, y))
        assert reason is not None and match in reason
        with pytest.warns(RuntimeWarning):
            got = hessian_diagonal(model, loss_fn, (x, y))
        assert_diagonal_close(got, reference_diagonal(model, loss_fn, x, y))
    y_ignored = y.clone()
    y_ignored[0] = -100
    assert "ignore_index" in ggn_identity_violation(model, CE, (x, y_ignored))


def test_bad_input():
    model = relu_mlp()
    x, y = data((4,))
    with pytest.raises(ValueError, match="method"):
        hessian_diagonal(model, CE, (x, y), method="dense")
    with pytest.raises(ValueError, match="chunk"):
        hessian_diagonal(model, CE, (x, y), chunk=0)
    with pytest.raises(KeyError, match="nope"):
        hessian_diagonal(model, CE, (x, y), ["nope"])
    with pytest.raises(TypeError, match="data"):
        hessian_diagonal(model, CE, x)
    with pytest.raises(ValueError, match="empty"):
        hessian_diagonal(model, CE, [])
    with pytest.raises(TypeError, match="model"):
        hessian_diagonal("net", CE, (x, y))
    model.train()
    with pytest.raises(ValueError, match="train mode"):
        hessian_diagonal(model, CE, (x, y))
    assert "train mode" in ggn_identity_violation(model, CE, (x, y))
