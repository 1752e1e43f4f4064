"""Tests of renyilib.experiments.replication_models and the study's published-code PGA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from renyilib.experiments.adaptive_study import published_pga
from renyilib.experiments.replication_data import synthetic_data
from renyilib.experiments.replication_models import (
    FCNN,
    NodeClassifier,
    ReplicationLeNet5,
    build_replication_model,
    fold_batchnorm,
    xavier_init,
)
from renyilib.hessian import hessian_operator
from renyilib.lanczos import slq
from renyilib.perturbation import adaptive_sharpness

pytest.importorskip("torch_geometric")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_fcnn_shapes_and_activations() -> None:
    m = FCNN()
    assert [p.shape for p in m.parameters()] == [(64, 10), (64,), (64, 64), (64,), (1, 64), (1,)]
    assert sum(isinstance(x, nn.ReLU) for x in m.modules()) == 2
    # a linear output can go below -1; the notebook's ELU output cannot
    elu = FCNN(activation="elu", output_activation="elu")
    with torch.no_grad():
        elu.net[-2].bias.fill_(-100.0)
    with torch.no_grad():
        assert float(elu(torch.randn(4, 10)).min()) >= -1.0
    with pytest.raises(ValueError, match="activation"):
        FCNN(activation="gelu")
    with pytest.raises(ValueError, match="sizes"):
        FCNN(sizes=(10,))


def test_lenet5_structure() -> None:
    m = ReplicationLeNet5()
    out = m.eval()(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert m.fc1.in_features == 32 * 4 * 4 and m.drop1.p == 0.5
    assert isinstance(m.bn1, nn.BatchNorm2d) and isinstance(m.bn2, nn.BatchNorm2d)
    # dropout is active in train mode only
    m.train()
    x = torch.randn(8, 1, 28, 28)
    assert not torch.equal(m(x), m(x))
    m.eval()
    assert torch.equal(m(x), m(x))


def test_xavier_init_is_seeded_and_glorot_scaled() -> None:
    a = xavier_init(FCNN(), generator=torch.Generator().manual_seed(0))
    b = xavier_init(FCNN(), generator=torch.Generator().manual_seed(0))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    w = a.net[2].weight  # 64 x 64: U(-a, a) with a = sqrt(6 / 128)
    bound = math.sqrt(6 / 128)
    assert float(w.detach().abs().max()) <= bound
    assert float(w.detach().std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)
    assert float(a.net[0].bias.detach().abs().max()) == 0.0


def _tiny_graph_model(heads: int = 2) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(7, 3, generator=g, dtype=torch.float64)
    src = torch.tensor([0, 1, 1, 2, 3, 4, 5, 6, 2, 0])
    dst = torch.tensor([1, 0, 2, 1, 4, 3, 6, 5, 5, 3])
    edge_index = torch.stack([src, dst])
    data = synthetic_data("cora")
    data.graph = {"features": feats, "edge_index": edge_index}
    data.num_classes = 2
    torch.manual_seed(1)
    model = build_replication_model("gat", data, hidden=2, heads=heads).double().eval()
    idx = torch.tensor([0, 2, 3, 5, 6])
    y = torch.tensor([0, 1, 1, 0, 1])
    return model, (idx, y)


def test_gat_hvp_and_slq_against_dense_hessian() -> None:
    # Hessian-vector products through GATConv message passing (softmax attention over
    # neighbours, ELU) against torch.func.hessian of the same loss, float64.
    model, (idx, y) = _tiny_graph_model()
    loss_fn = nn.CrossEntropyLoss()
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    sizes = [params[n].numel() for n in names]
    flat = torch.cat([params[n].flatten() for n in names])

    def loss_of(v: torch.Tensor) -> torch.Tensor:
        parts = torch.split(v, sizes)
        p = {n: t.view_as(params[n]) for n, t in zip(names, parts)}
        return loss_fn(functional_call(model, p, (idx,)), y)

    dense = torch.func.hessian(loss_of)(flat)
    op = hessian_operator(model, loss_fn, (idx, y))
    assert op.shape == (flat.numel(), flat.numel())
    v = torch.randn(flat.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(op @ v, dense @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.to_dense(), dense, rtol=1e-10, atol=1e-12)
    # SLQ with as many Lanczos steps as the dimension integrates polynomials exactly:
    # its trace matches Tr H of the dense matrix (probe variance aside: many probes).
    q = slq(
        hessian_operator(model, loss_fn, (idx, y)),
        num_probes=40,
        lanczos_steps=flat.numel(),
        seed=0,
    )
    exact = np.linalg.eigvalsh(dense.numpy())
    assert q.trace().value == pytest.approx(exact.sum(), abs=4 * q.trace().stderr + 1e-9)


def test_node_classifier_indexes_full_graph_outputs() -> None:
    model, (idx, _) = _tiny_graph_model(heads=1)
    assert isinstance(model, NodeClassifier)
    full = model.net(model.features, model.edge_index)
    torch.testing.assert_close(model(idx), full[idx])
    assert "features" not in model.state_dict()  # the graph is not saved with the weights
    with pytest.raises(ValueError, match="graph"):
        build_replication_model("gat", synthetic_data("abalone"))
    with pytest.raises(ValueError, match="name"):
        build_replication_model("resnet")


def test_adaptive_sharpness_through_gat() -> None:
    # The PGA runs through message passing: deterministic in eval mode, positive, and
    # (for a small radius, where the loss is locally linear) proportional to rho.
    model, data = _tiny_graph_model()
    loss_fn = nn.CrossEntropyLoss()
    a = adaptive_sharpness(model, loss_fn, data, 1e-5, batch_size=3, restarts=4)
    b = adaptive_sharpness(model, loss_fn, data, 1e-5, batch_size=3, restarts=4)
    c = adaptive_sharpness(model, loss_fn, data, 2e-5, batch_size=3, restarts=4)
    assert a == b and a.value > 0
    assert c.value / a.value == pytest.approx(2.0, rel=1e-3)


# --------------------------------------------------------------------------- published PGA


def test_published_pga_inverted_clamp_pins_negative_weights() -> None:
    # torch.clamp(p, lo, hi) with lo > hi returns hi: with the FCNN notebook's bounds
    # (w0 - rho*w0, w0 + rho*w0) every negative weight ends at w0 (1 + rho).
    w0 = torch.tensor([-2.0, -0.5, 1.0, 3.0])
    p = w0 + torch.tensor([0.3, -0.3, 0.3, -0.3])
    rho = 0.1
    out = torch.clamp(p, w0 - rho * w0, w0 + rho * w0)
    torch.testing.assert_close(out[:2], w0[:2] * (1 + rho))
    torch.testing.assert_close(out[2:], torch.tensor([1.1, 2.7]))


def test_published_pga_switches() -> None:
    torch.manual_seed(0)
    net = (
        nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3)).double().eval()
    )
    x = torch.randn(40, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    loss_fn = nn.CrossEntropyLoss()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    kw = {"steps": 5, "restarts": 4, "batch_size": 10, "seed": 0}
    # geometry-respecting steps (lr_steps=False), eval mode, fixed centre: the same
    # iterates as adaptive_sharpness without the centre
    ours = adaptive_sharpness(net, loss_fn, (x, y), 0.05, include_start=False, **kw)
    theirs = published_pga(net, loss_fn, (x, y), 0.05, lr_steps=False, **kw)
    assert theirs.mean() == pytest.approx(ours.value, rel=1e-10)
    base = published_pga(net, loss_fn, (x, y), 0.05, lr=0.1, **kw)
    inv = published_pga(net, loss_fn, (x, y), 0.05, lr=0.1, inverted_clamp=True, **kw)
    train = published_pga(net, loss_fn, (x, y), 0.05, lr=0.1, train_mode=True, **kw)
    assert not np.allclose(base, inv) and not np.allclose(base, train)
    # the model itself is never modified (the ascent runs on a copy)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert not net.training
    with pytest.raises(ValueError, match="lr"):
        published_pga(net, loss_fn, (x, y), 0.05, lr=None)


def test_fold_batchnorm_same_function_and_minimum_sharpness_scope() -> None:
    from renyilib.rescaling import minimum_sharpness

    torch.manual_seed(0)
    m = ReplicationLeNet5(channels=(3, 4), hidden=(8, 6)).double()
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64)
    m.train()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for _ in range(3):
            m(x + torch.randn_like(x))
        for bn in (m.bn1, m.bn2):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.normal_()
    m.eval()
    f = fold_batchnorm(m)
    assert not any(isinstance(k, nn.BatchNorm2d) for k in f.modules()) and not f.training
    with torch.no_grad():
        torch.testing.assert_close(f(x), m(x), rtol=1e-12, atol=1e-12)
    y = torch.randint(0, 10, (16,))
    with pytest.raises(ValueError, match="normalization"):
        minimum_sharpness(m, nn.CrossEntropyLoss(), (x, y))
    res = minimum_sharpness(f, nn.CrossEntropyLoss(), (x, y))
    assert res.converged and 0 < res.value <= res.trace
    with pytest.raises(TypeError, match="ReplicationLeNet5 with BatchNorm"):
        fold_batchnorm(f)
