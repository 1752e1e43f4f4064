"""Hessian operators against torch.func.hessian (float64).

Tolerance: products are sums of O(n) float64 terms of size O(1); the reference
and ours differ only in summation order, so agreement to 1e-10 absolute is
expected (observed ~1e-16).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from conftest import dense_hessian, split_batches, tiny_cnn, tiny_mlp
from torch import nn

import renyilib.hessian as hessian_mod
from renyilib.hessian import hessian_operator, layer_blocks
from renyilib.lanczos import slq

ATOL = 1e-10
CE = nn.CrossEntropyLoss()


@pytest.mark.parametrize("method", ["graph", "jvp", "linearize"])
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_every_block_matches_torch_func_hessian(model_name, method, mlp_data, cnn_data):
    model, (x, y) = (tiny_mlp(), mlp_data) if model_name == "mlp" else (tiny_cnn(), cnn_data)
    blocks = layer_blocks(model)
    assert list(blocks)[-1] == "all"
    for name, params in blocks.items():
        ref = dense_hessian(model, CE, x, y, params)
        op = hessian_operator(model, CE, (x, y), name, backend=method)
        assert op.shape == ref.shape
        assert op.param_names == params
        torch.testing.assert_close(op.to_dense(), ref, atol=ATOL, rtol=0)
        v = torch.randn(op.shape[0], dtype=torch.float64)
        torch.testing.assert_close(op @ v, ref @ v, atol=ATOL, rtol=0)
        V = torch.randn(op.shape[0], 3, dtype=torch.float64)
        torch.testing.assert_close(op @ V, ref @ V, atol=ATOL, rtol=0)


@pytest.mark.parametrize("cache_samples", [None, 4, 0])
@pytest.mark.parametrize("method", ["graph", "jvp", "linearize"])
def test_multibatch_short_last_batch_is_mean_over_samples(cnn_data, method, cache_samples):
    model = tiny_cnn()
    x, y = cnn_data
    names = layer_blocks(model)["all"]
    ref = dense_hessian(model, CE, x, y, names)
    batches = split_batches(x, y, 4)  # 4, 4, 2: unequal weights
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    op = hessian_operator(model, CE, iter(batches), backend=method, cache_samples=cache_samples)
    assert op.num_samples == 10
    # graph/linearize keep whole batches within the budget; jvp keeps nothing.
    kept = {None: 10, 4: 4, 0: 0}[cache_samples] if method != "jvp" else 0
    assert op.cached_samples == kept
    torch.testing.assert_close(op.to_dense(), ref, atol=ATOL, rtol=0)
    # The plain average of batch Hessians is different: the weighting matters.
    per_batch = [dense_hessian(model, CE, bx, by, names) for bx, by in batches]
    assert (sum(per_batch) / 3 - ref).abs().max() > 1e-4


def test_dataloader_and_gradient(cnn_data):
    model = tiny_cnn()
    x, y = cnn_data
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=3)
    op = hessian_operator(model, CE, loader)
    params = list(model.parameters())
    grads = torch.autograd.grad(CE(model(x), y), params, materialize_grads=True)
    torch.testing.assert_close(
        op.gradient(), torch.cat([g.reshape(-1) for g in grads]), atol=ATOL, rtol=0
    )


def test_counter_scipy_dtype_and_symmetry(mlp_data):
    model = tiny_mlp()
    op = hessian_operator(model, CE, mlp_data)
    n = op.shape[0]
    assert op.dtype == torch.float64 and op.device.type == "cpu" and op.num_matvecs == 0
    op @ torch.ones(n, dtype=torch.float64)
    op @ torch.ones(n, 4, dtype=torch.float64)
    assert op.num_matvecs == 5
    lin = op.to_scipy()
    v = np.random.default_rng(0).standard_normal(n)
    ref = dense_hessian(model, CE, *mlp_data, layer_blocks(model)["all"]).numpy()
    np.testing.assert_allclose(lin @ v, ref @ v, atol=ATOL)
    np.testing.assert_allclose(lin.matmat(np.eye(n)[:, :2]), ref[:, :2], atol=ATOL)
    # float32 input is cast to the block's dtype
    assert (op @ torch.ones(n, dtype=torch.float32)).dtype == torch.float64


@pytest.mark.parametrize("method", ["graph", "jvp", "linearize"])
def test_unused_parameter_has_zero_rows(cnn_data, method):
    model = tiny_cnn()
    op = hessian_operator(model, CE, cnn_data, ["unused.weight", "head.weight"], backend=method)
    H = op.to_dense()
    assert torch.all(H[:4] == 0) and torch.all(H[:, :4] == 0)
    assert H[4:, 4:].abs().max() > 1e-3
    zero = hessian_operator(model, CE, cnn_data, "unused.weight", backend=method)
    assert torch.all(zero.to_dense() == 0)
    assert torch.all(zero.gradient() == 0)


def test_params_outside_block_get_no_gradient(mlp_data):
    model = tiny_mlp()
    op = hessian_operator(model, CE, mlp_data, "2.weight")
    op @ torch.ones(op.shape[0], dtype=torch.float64)
    assert all(p.grad is None for p in model.parameters())


def test_train_mode_rejected_and_allowed(cnn_data):
    model = tiny_cnn().train()
    with pytest.raises(ValueError, match="train mode"):
        hessian_operator(model, CE, cnn_data)
    before = model.bn.running_mean.clone()
    op = hessian_operator(model, CE, cnn_data, allow_train_mode=True)
    H = op.to_dense()
    assert torch.equal(model.bn.running_mean, before)  # buffers not modified
    # Train-mode BatchNorm uses batch statistics: a different Hessian from eval mode.
    H_eval = hessian_operator(tiny_cnn().eval(), CE, cnn_data).to_dense()
    assert (H - H_eval).abs().max() > 1e-6
    # ... equal to central finite differences of the autograd gradient of a train-mode
    # copy (torch.func.hessian disagrees here: forward-over-reverse through train-mode
    # batch_norm differs by up to 0.1, while finite differences agree with ours to 1e-10).
    # FD error: O(eps^2 |L'''|) + O(1e-16/eps) ~ 1e-10 for eps = 1e-6; tolerance 1e-7.
    x, y = cnn_data

    def grad_at(flat: torch.Tensor) -> torch.Tensor:
        m = copy.deepcopy(model)
        torch.nn.utils.vector_to_parameters(flat, list(m.parameters()))
        grads = torch.autograd.grad(CE(m(x), y), list(m.parameters()), materialize_grads=True)
        return torch.cat([g.reshape(-1) for g in grads])

    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    eps = 1e-6
    for i in range(0, op.shape[0], 7):
        e = torch.zeros_like(theta)
        e[i] = eps
        col = (grad_at(theta + e) - grad_at(theta - e)) / (2 * eps)
        torch.testing.assert_close(H[:, i], col, atol=1e-7, rtol=0)
    for method in ("jvp", "linearize"):
        with pytest.raises(ValueError, match=f"backend='{method}' needs a model in eval mode"):
            hessian_operator(model, CE, cnn_data, allow_train_mode=True, backend=method)


def test_layer_blocks_forward_order():
    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = nn.Linear(3, 2)
            self.early = nn.Linear(4, 3)
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            return self.late(self.bn(self.early(x)))

    net = Reversed()
    assert list(layer_blocks(net)) == ["late.weight", "early.weight", "all"]
    assert list(layer_blocks(net, torch.randn(5, 4))) == ["early.weight", "late.weight", "all"]
    assert net.training  # mode restored
    assert "bn.weight" in layer_blocks(net)["all"] and "bn.weight" not in layer_blocks(net)


def test_layer_blocks_message_passing_linears():
    """GATConv's linear map (torch_geometric's own ``Linear``) is a layer; its attention vectors are not."""
    pyg = pytest.importorskip("torch_geometric.nn")

    class TwoGAT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = pyg.GATConv(5, 4, heads=2)
            self.conv2 = pyg.GATConv(8, 3, heads=1)

        def forward(self, x, edge_index):
            return self.conv2(torch.relu(self.conv1(x, edge_index)), edge_index)

    net = TwoGAT()
    blocks = layer_blocks(net)
    assert list(blocks) == ["conv1.lin.weight", "conv2.lin.weight", "all"]
    assert "conv1.att_src" in blocks["all"] and "conv1.att_src" not in blocks
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    assert list(layer_blocks(net, (torch.randn(4, 5), edge_index)))[:2] == list(blocks)[:2]


def test_errors(mlp_data):
    model = tiny_mlp()
    with pytest.raises(KeyError, match=r"valid blocks.*0\.weight"):
        hessian_operator(model, CE, mlp_data, "nope")
    with pytest.raises(KeyError, match="unknown parameter names"):
        hessian_operator(model, CE, mlp_data, ["0.weight", "nope"])
    with pytest.raises(ValueError, match="data"):
        hessian_operator(model, CE, [])
    x, y = mlp_data
    for method in ("graph", "jvp", "linearize"):
        with pytest.raises(ValueError, match="non-finite loss"):
            hessian_operator(model, CE, (x * float("nan"), y), backend=method)
    with pytest.raises(ValueError, match="backend"):
        hessian_operator(model, CE, mlp_data, backend="fast")
    op = hessian_operator(model, CE, mlp_data)
    n = op.shape[0]
    with pytest.raises(ValueError, match=r"v: expected shape"):
        op @ torch.ones(n + 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"v: expected shape"):
        op @ torch.ones(2, n, n, dtype=torch.float64)
    with pytest.raises(TypeError, match="model"):
        hessian_operator("model", CE, mlp_data)


def test_float32_model_close_to_float64():
    m64 = tiny_mlp()
    m32 = tiny_mlp().float().eval()
    g = torch.Generator().manual_seed(3)
    x, y = (
        torch.randn(20, 4, generator=g, dtype=torch.float64),
        torch.randint(0, 3, (20,), generator=g),
    )
    H64 = hessian_operator(m64, CE, (x, y)).to_dense()
    for method in ("graph", "jvp", "linearize"):
        op32 = hessian_operator(m32, CE, (x.float(), y), backend=method)
        assert op32.dtype == torch.float32
        # float32 rounding: relative 1e-5 of the largest entry.
        torch.testing.assert_close(
            op32.to_dense().double(), H64, atol=1e-5 * H64.abs().max().item(), rtol=0
        )


@pytest.mark.parametrize("method", ["graph", "linearize"])
@pytest.mark.parametrize("batched", [True, False])
def test_batched_and_looped_products_agree(cnn_data, batched, method):
    model = tiny_cnn()
    ref = dense_hessian(model, CE, *cnn_data, layer_blocks(model)["all"])
    op = hessian_operator(model, CE, cnn_data, batched=batched, backend=method)
    V = torch.randn(op.shape[0], 40, dtype=torch.float64)  # > one vmapped chunk of 32
    torch.testing.assert_close(op @ V, ref @ V, atol=ATOL, rtol=0)
    assert op.num_matvecs == 40
    # The vmapped path ran without falling back to the loop (BatchNorm, conv, tanh).
    assert op._batched_ok is batched


def test_default_batching_rule(cnn_data):
    """``batched=None``: a loop of single products for the graph (PyHessian's product: the
    vmapped one was slower on the held-out CNN, benchmarks/README.md), vmapped columns for
    the linearized map (its reason to exist)."""
    assert not hessian_operator(tiny_cnn(), CE, cnn_data)._batched_ok
    assert not hessian_operator(tiny_cnn(), CE, cnn_data, backend="graph")._batched_ok
    assert hessian_operator(tiny_cnn(), CE, cnn_data, backend="linearize")._batched_ok
    assert hessian_operator(tiny_cnn(), CE, cnn_data, batched=True)._batched_ok
    assert not hessian_operator(
        tiny_cnn(), CE, cnn_data, backend="linearize", batched=False
    )._batched_ok


def test_auto_backend_is_the_graph_and_never_switches(mlp_data):
    """``backend="auto"`` is the reused double-backward graph for every product: no switch
    mid-run, whatever the number of products; plan() only validates."""
    model = tiny_mlp()
    ref = dense_hessian(model, CE, *mlp_data, layer_blocks(model)["all"])
    op = hessian_operator(model, CE, split_batches(*mlp_data, 4), cache_samples=8)
    assert op.backend == "graph" and op.cached_samples == 8
    V = torch.randn(op.shape[0], 60, dtype=torch.float64)
    op.plan(10_000)
    for _ in range(3):
        torch.testing.assert_close(op @ V, ref @ V, atol=ATOL, rtol=0)
    assert op.backend == "graph" and op.num_matvecs == 180
    assert all(lin is None for lin in op._lins)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="products"):
            op.plan(bad)
    op_s = hessian_operator(model, CE, mlp_data)
    slq(op_s, 10, 10, seed=0, probe_batch=10, progress=False)
    assert op_s.backend == "graph"
    # The old keyword and attribute still work, with a DeprecationWarning.
    with pytest.warns(DeprecationWarning, match="backend"):
        old = hessian_operator(model, CE, mlp_data, method="jvp")
    with pytest.warns(DeprecationWarning, match="backend"):
        assert old.method == "jvp"
    torch.testing.assert_close(old.to_dense(), ref, atol=ATOL, rtol=0)


class ViewMutations(nn.Module):
    """In-place ops on views of tangent-free tensors, whose bases are used afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.out = nn.Linear(6, 3)
        self.register_buffer("mask", torch.ones(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.tanh(self.lin(x))
        s = torch.ones_like(x)  # from the data: tangent-free
        s[:, :3].mul_(2)  # z[:, :3].mul_(2) on a view; the base s is used below
        buf = torch.zeros(x.shape[0], 6, dtype=x.dtype)
        buf[:, 2:5] = x[:, :3] ** 2  # slice assignment into a fresh buffer
        m = self.mask.clone()
        m[1:3] += 0.5  # a view of a copy of a buffer
        return self.out(z * s * m + buf)


class ScatterGraph(nn.Module):
    """GAT-style message passing: per-edge messages summed into nodes with index_add_/scatter_add."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(4, 4)
        self.a = nn.Linear(8, 1)
        self.head = nn.Linear(4, 3)
        self.register_buffer("src", torch.tensor([0, 1, 2, 3, 4, 0, 2, 5]))
        self.register_buffer("dst", torch.tensor([1, 2, 3, 4, 5, 5, 0, 3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.w(x)
        e = torch.exp(torch.tanh(self.a(torch.cat([h[self.src], h[self.dst]], 1))))  # (E, 1)
        den = torch.zeros(x.shape[0], 1, dtype=x.dtype).index_add_(0, self.dst, e)
        msg = torch.zeros_like(h).scatter_add_(0, self.dst[:, None].expand(-1, 4), e * h[self.src])
        return self.head(torch.relu(msg / (den + 1.0)))


@pytest.mark.parametrize("case", ["views", "scatter", "resnet"])
def test_linearize_is_exact_with_view_mutations_scatter_and_resnet(case):
    """Functionalization before constant folding: in-place ops on views, slice assignments,
    index_add_/scatter_add_ and a ResNet (BatchNorm in eval, residual adds) give the exact
    Hessian on every call (the old rewrite lost the mutation of a view's base: relative
    error ~0.5 on ``views``)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if case == "views":
        model = ViewMutations().double().eval()
        x = torch.randn(10, 6, generator=g, dtype=torch.float64)
    elif case == "scatter":
        model = ScatterGraph().double().eval()
        x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    else:
        from renyilib.experiments.models import build_model

        model = build_model("resnet18", num_classes=3, width=1 / 32).double().eval()
        x = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (x.shape[0],), generator=g)
    block = "all" if case != "resnet" else "layer2.0.conv1.weight"
    names = layer_blocks(model)[block] if block == "all" else [block]
    ref = dense_hessian(model, CE, x, y, names)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to jvp
        op = hessian_operator(model, CE, (x, y), block, backend="linearize")
    assert op.backend == "linearize" and op._lins[0] is not None
    V = torch.randn(op.shape[0], 3, generator=g, dtype=torch.float64)
    want = ref @ V
    tol = 1e-10 * max(1.0, want.abs().max().item())
    for _ in range(3):  # every call, vmapped and single
        torch.testing.assert_close(op @ V, want, atol=tol, rtol=0)
        torch.testing.assert_close(op @ V[:, 0], want[:, 0], atol=tol, rtol=0)


def test_linearize_refuses_a_mutation_functionalization_cannot_remove():
    """A tensor created from a plain (non-buffer) attribute and mutated in place is a closure
    constant for the trace: the map is refused (RuntimeWarning) and the batch uses the
    forward-over-reverse product, still exact."""

    class Attr(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)
            self.scale = torch.ones(3, dtype=torch.float64)  # not a buffer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = self.scale.clone()
            s[:2].mul_(3.0)
            return torch.tanh(self.lin(x)) * s

    torch.manual_seed(0)
    model = Attr().double().eval()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    ref = dense_hessian(model, CE, x, y, layer_blocks(model)["all"])
    with pytest.warns(RuntimeWarning, match="still mutates"):
        op = hessian_operator(model, CE, (x, y), backend="linearize")
    assert op._lins[0] is None and op.cached_samples == 0
    torch.testing.assert_close(op.to_dense(), ref, atol=ATOL, rtol=0)


def test_linearized_map_never_writes_to_its_folded_constants():
    """torch.func.linearize (torch 2.14) keeps ``a.add_(c)`` in the per-call graph when ``a``
    is folded into a constant, so every call adds ``c`` again; ours functionalizes first.
    Exact against ``torch.func.jvp`` on every call."""

    def f(w, c):
        a = torch.ones(3, dtype=w.dtype) * 2  # tangent-free: folded
        a.add_(c)  # in place on the folded constant
        return (a * w).sin(), w.sum()

    w, t = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    c = torch.arange(3.0, dtype=torch.float64)
    out, lin = hessian_mod._linearized_map(f, (w,), (c,))
    torch.testing.assert_close(out, f(w, c), atol=0, rtol=0)
    ref = torch.func.jvp(lambda w: f(w, c), (w,), (t,))[1]
    for _ in range(3):
        got = lin(t)
        torch.testing.assert_close(got, ref, atol=1e-15, rtol=0)
    vm = torch.func.vmap(lin)(torch.stack([t, 2 * t]))
    torch.testing.assert_close(vm[0][1], 2 * ref[0], atol=1e-15, rtol=0)


def test_linearize_is_exact_on_a_vit():
    """vit-pytorch's SimpleViT (``x += pos_embedding`` after a LayerNorm), the model on
    which torch.func.linearize drifted from its second call: our linearized products
    are kept (no fallback) and equal forward-over-reverse on every call, in float64."""
    pytest.importorskip("vit_pytorch")
    from renyilib.experiments.models import build_model

    torch.manual_seed(0)
    model = build_model("vit", 3, width=1 / 32, image_size=8, depth=2).double().eval()
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    data = (x, torch.tensor([0, 1, 2, 0, 1, 2]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the guard must not fire
        op = hessian_operator(model, CE, data, backend="linearize")
    assert op.backend == "linearize" and op._lins[0] is not None
    ref = hessian_operator(model, CE, data, backend="jvp")
    V = torch.randn(op.shape[0], 3, dtype=torch.float64)
    want = ref @ V
    for _ in range(3):
        torch.testing.assert_close(op @ V, want, atol=1e-10 * want.abs().max().item(), rtol=0)
