"""Tests for renyilib.optim: SAM, ASAM, Eigen-SAM, RSAM against closed forms and exact answers.

Everything runs in float64. Tolerances: closed-form perturbations are a handful
of float64 operations on O(1) numbers, so 1e-12 relative is ~1e4 ulp of slack;
"rho = 0 reproduces the base optimizer" and state-dict round trips are checked
bitwise (the same operations run in the same order on CPU).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from renyilib.optim import (
    ASAM,
    RSAM,
    SAM,
    EigenSAM,
    build_optimizer,
    frozen_bn_stats,
    renyi_gradient_regularizer,
)

DT = torch.float64
RTOL = 1e-12


def _mlp(seed: int = 0, bn: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 7)]
    if bn:
        layers.append(nn.BatchNorm1d(7))
    layers += [nn.Tanh(), nn.Linear(7, 3)]
    return nn.Sequential(*layers).to(DT)


def _data(seed: int = 1, n: int = 16):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (n,), generator=gen)
    return x, y


def _closure(opt, model, x, y):
    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


KINDS = {
    "sam": lambda ps, m, rho, **kw: SAM(ps, torch.optim.SGD, rho=rho, model=m, **kw),
    "asam": lambda ps, m, rho, **kw: ASAM(ps, torch.optim.SGD, rho=rho, eta=0.01, model=m, **kw),
    "eigensam": lambda ps, m, rho, **kw: EigenSAM(
        ps, torch.optim.SGD, rho=rho, eigvec_weight=0.2, freq=2, power_iters=2, model=m, **kw
    ),
    "rsam": lambda ps, m, rho, **kw: RSAM(ps, torch.optim.SGD, rho=rho, alpha=1.2, model=m, **kw),
    "rsam_fixed": lambda ps, m, rho, **kw: RSAM(
        ps, torch.optim.SGD, rho=rho, alpha=1.2, radius="fixed", model=m, **kw
    ),
}
SGD_KW = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


# --------------------------------------------------------------- rho = 0
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_rho_zero_reproduces_base_optimizer_bitwise(kind):
    x, y = _data()
    ref = _mlp()
    base = torch.optim.SGD(ref.parameters(), **SGD_KW)
    model = _mlp()
    opt = KINDS[kind](model.parameters(), model, 0.0, **SGD_KW)
    for _ in range(5):
        base.step(_closure(base, ref, x, y))
        opt.step(_closure(opt, model, x, y))
    for a, b in zip(ref.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)  # parameters and BatchNorm buffers


# ------------------------------------------------------ closed forms
def _one_param(w, g, name="weight"):
    """A parameter with value ``w`` and gradient ``g`` inside a module (for ASAM's names)."""
    mod = nn.Module()
    p = nn.Parameter(torch.tensor(w, dtype=DT))
    mod.register_parameter(name, p)
    p.grad = torch.tensor(g, dtype=DT)
    return mod, p


def _eps(opt, p):
    w0 = p.detach().clone()
    opt.first_step()
    e = p.detach() - w0
    opt.second_step()
    return e


W = [1.0, -2.0, 0.5, 3.0]
G = [3.0, -4.0, 0.0, 12.0]  # ||g||_2 = 13, ||g||_3^3 = 1819


def test_sam_perturbation_closed_form():
    mod, p = _one_param(W, G)
    e = _eps(SAM([p], torch.optim.SGD, rho=0.26, lr=0.0), p)
    torch.testing.assert_close(e, 0.26 * torch.tensor(G, dtype=DT) / 13, rtol=RTOL, atol=0)


def test_asam_perturbation_closed_form_weights_and_bias():
    mod = nn.Linear(2, 1).to(DT)
    with torch.no_grad():
        mod.weight.copy_(torch.tensor([[1.0, -2.0]]))
        mod.bias.copy_(torch.tensor([0.5]))
    mod.weight.grad = torch.tensor([[3.0, -4.0]], dtype=DT)
    mod.bias.grad = torch.tensor([12.0], dtype=DT)
    opt = ASAM(mod.parameters(), torch.optim.SGD, rho=0.5, eta=0.01, model=mod, lr=0.0)
    w0 = [p.detach().clone() for p in mod.parameters()]
    opt.first_step()
    # T = |w| + eta on the weight = [1.01, 2.01]; T = 1 on the bias.
    tg = np.array([1.01 * 3.0, 2.01 * -4.0, 12.0])
    norm = np.sqrt((tg**2).sum())
    want_w = 0.5 * np.array([1.01**2 * 3.0, 2.01**2 * -4.0]) / norm
    want_b = 0.5 * 12.0 / norm
    got_w = (mod.weight.detach() - w0[0]).numpy().ravel()
    got_b = (mod.bias.detach() - w0[1]).numpy().ravel()
    np.testing.assert_allclose(got_w, want_w, rtol=RTOL)
    np.testing.assert_allclose(got_b, [want_b], rtol=RTOL)
    opt.second_step()
    assert torch.equal(mod.weight.detach(), w0[0])  # restored bitwise (lr = 0)


def test_rsam_paper_perturbation_closed_form_alpha_above_one():
    # alpha = 1.5: eps = +rho * sign(g)|g|^2 / (sum g^2)^1.5 = rho * [9, -16, 0, 144] / 2197.
    mod, p = _one_param(W, G)
    e = _eps(RSAM([p], torch.optim.SGD, rho=0.3, alpha=1.5, lr=0.0), p)
    want = 0.3 * torch.tensor([9.0, -16.0, 0.0, 144.0], dtype=DT) / 2197
    torch.testing.assert_close(e, want, rtol=RTOL, atol=0)


def test_rsam_paper_perturbation_closed_form_alpha_below_one_descends():
    # alpha = 0.75: sign(1 - alpha) = +1, eps = -rho * sign(g)|g|^0.5 / 169^0.75.
    mod, p = _one_param(W, G)
    e = _eps(RSAM([p], torch.optim.SGD, rho=0.3, alpha=0.75, lr=0.0), p)
    g = np.array(G)
    want = -0.3 * np.sign(g) * np.abs(g) ** 0.5 / 169**0.75
    np.testing.assert_allclose(e.numpy(), want, rtol=RTOL, atol=0)


def test_rsam_negative_power_gives_zero_for_zero_gradient_entries():
    # alpha = 0.25: 2*alpha - 1 = -0.5; the zero entry must give 0, not inf/nan.
    mod, p = _one_param(W, G)
    e = _eps(RSAM([p], torch.optim.SGD, rho=0.3, alpha=0.25, lr=0.0), p)
    g = np.array(G)
    want = np.zeros(4)
    nz = g != 0
    want[nz] = -0.3 * np.sign(g[nz]) * np.abs(g[nz]) ** -0.5 / 169**0.25
    assert torch.isfinite(e).all()
    np.testing.assert_allclose(e.numpy(), want, rtol=RTOL, atol=0)


@pytest.mark.parametrize("alpha", [0.6, 1.1, 1.5, 2.0, 3.0])
def test_rsam_first_order_gain_is_the_renyi_regularizer(alpha):
    """Eq. 12: g^T eps = -rho sign(1 - alpha) sum g^{2 alpha} / (sum g^2)^alpha."""
    gen = torch.Generator().manual_seed(3)
    g = torch.randn(50, generator=gen, dtype=DT)
    p = nn.Parameter(torch.zeros(50, dtype=DT))
    p.grad = g.clone()
    e = _eps(RSAM([p], torch.optim.SGD, rho=0.7, alpha=alpha, lr=0.0), p)
    sign = 1.0 if alpha > 1 else -1.0
    want = sign * 0.7 * renyi_gradient_regularizer(g, alpha)
    assert float(g @ e) == pytest.approx(want, rel=RTOL)


@pytest.mark.parametrize("alpha", [0.5, 0.8, 1.2, 2.0, 3.0])
def test_rsam_fixed_radius_has_dual_norm_rho(alpha):
    """radius="fixed": ||eps||_p = rho with p = 2 alpha / (2 alpha - 1) (dual of q = 2 alpha)."""
    gen = torch.Generator().manual_seed(4)
    g1, g2 = torch.randn(30, generator=gen, dtype=DT), torch.randn(3, 4, generator=gen, dtype=DT)
    p1, p2 = nn.Parameter(torch.zeros(30, dtype=DT)), nn.Parameter(torch.zeros(3, 4, dtype=DT))
    p1.grad, p2.grad = g1.clone(), g2.clone()
    opt = RSAM([p1, p2], torch.optim.SGD, rho=0.4, alpha=alpha, radius="fixed", lr=0.0)
    opt.first_step()
    e = torch.cat([p1.detach().ravel(), p2.detach().ravel()])
    opt.second_step()
    p = opt.dual_exponent
    assert p == (math.inf if alpha == 0.5 else 2 * alpha / (2 * alpha - 1))
    assert float(torch.linalg.vector_norm(e, ord=p)) == pytest.approx(0.4, rel=RTOL)
    # It maximizes g^T eps on that ball (for alpha >= 1): Hoelder's bound is attained.
    g = torch.cat([g1.ravel(), g2.ravel()])
    if alpha >= 1:
        bound = 0.4 * float(torch.linalg.vector_norm(g, ord=2 * alpha))
        assert float(g @ e) == pytest.approx(bound, rel=RTOL)


def test_rsam_fixed_radius_tends_to_sam_as_alpha_tends_to_one():
    """alpha -> 1+: the l_p-ball maximizer tends to SAM's eps = rho g/||g|| (error O(alpha - 1))."""
    gen = torch.Generator().manual_seed(5)
    g = torch.randn(40, generator=gen, dtype=DT)
    p = nn.Parameter(torch.randn(40, generator=gen, dtype=DT))
    p.grad = g.clone()
    e_s = _eps(SAM([p], torch.optim.SGD, rho=0.05, lr=0.0), p)
    for d in (1e-4, 1e-8):
        p.grad = g.clone()
        e_r = _eps(RSAM([p], torch.optim.SGD, rho=0.05, alpha=1.0 + d, radius="fixed", lr=0.0), p)
        # |u|^(2d) = 1 + 2d log|u| + ...: relative deviation of order 2d |log|u||, below 50 d here.
        assert float((e_r - e_s).norm() / e_s.norm()) < 50 * d


@pytest.mark.parametrize("radius", ["paper", "fixed"])
@pytest.mark.parametrize("alpha", [1, 1.0])
def test_rsam_refuses_alpha_one(alpha, radius):
    """sign(1 - alpha) = 0 at alpha = 1 would make RSAM the base optimizer: refused."""
    p = [nn.Parameter(torch.zeros(3, dtype=DT))]
    with pytest.raises(ValueError, match="alpha.*differ from 1"):
        RSAM(p, torch.optim.SGD, rho=0.1, alpha=alpha, radius=radius, lr=0.1)
    with pytest.raises(ValueError, match="alpha.*differ from 1"):
        build_optimizer("rsam", nn.Linear(2, 2), lr=0.1, alpha=1.0)


def test_rsam_paper_radius_grows_as_gradient_shrinks():
    """Eq. 11's size: ||eps||_2 = rho * ||u^{2a-1}||_2 / ||g||_2 scales like 1/||g||."""
    gen = torch.Generator().manual_seed(6)
    g = torch.randn(20, generator=gen, dtype=DT)
    norms = []
    for scale in (1.0, 0.01):
        p = nn.Parameter(torch.zeros(20, dtype=DT))
        p.grad = scale * g
        opt = RSAM([p], torch.optim.SGD, rho=0.1, alpha=1.2, lr=0.0)
        opt.first_step()
        norms.append(opt.last_perturbation_norm)
        opt.second_step()
    assert norms[1] / norms[0] == pytest.approx(100.0, rel=RTOL)


def test_eigensam_perturbation_closed_form():
    p = nn.Parameter(torch.zeros(3, dtype=DT))
    p.grad = torch.tensor([3.0, 4.0, 0.0], dtype=DT)
    opt = EigenSAM([p], torch.optim.SGD, rho=0.1, eigvec_weight=0.2, lr=0.0)
    v = torch.tensor([0.0, -0.6, 0.8], dtype=DT)  # g.v = -2.4 < 0
    opt._eigvec = [v.clone()]
    e = _eps(opt, p)
    ghat = torch.tensor([0.6, 0.8, 0.0], dtype=DT)
    vperp = v - (ghat @ v) * ghat  # = v + 0.48 ghat
    d = ghat - 0.2 * vperp
    torch.testing.assert_close(e, 0.1 * d / d.norm(), rtol=RTOL, atol=0)


def test_eigensam_alpha_is_a_deprecated_name_of_eigvec_weight():
    p = nn.Parameter(torch.zeros(3, dtype=DT))
    v = torch.tensor([0.0, -0.6, 0.8], dtype=DT)
    eps = []
    for kw in ({"eigvec_weight": 0.3}, {"alpha": 0.3}):
        p.grad = torch.tensor([3.0, 4.0, 0.0], dtype=DT)
        if "alpha" in kw:
            with pytest.warns(DeprecationWarning, match="eigvec_weight"):
                opt = EigenSAM([p], torch.optim.SGD, rho=0.1, lr=0.0, **kw)
            with pytest.warns(DeprecationWarning, match="eigvec_weight"):
                assert opt.alpha == 0.3
        else:
            opt = EigenSAM([p], torch.optim.SGD, rho=0.1, lr=0.0, **kw)
        assert opt.eigvec_weight == 0.3
        opt._eigvec = [v.clone()]
        eps.append(_eps(opt, p))
    torch.testing.assert_close(eps[0], eps[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="eigvec_weight"):
        EigenSAM([p], torch.optim.SGD, eigvec_weight=-0.1, lr=0.1)


# -------------------------------------------- Eigen-SAM's eigenvector
def test_eigensam_eigenvector_matches_dense_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).to(DT)
    x, _ = _data(n=20)
    x = x[:, :3]
    y = torch.randn(20, 1, generator=torch.Generator().manual_seed(9), dtype=DT)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().ravel() for p in model.parameters()])

    def loss_flat(flat):
        chunks = torch.split(flat, [math.prod(s) for s in shapes])
        params = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        out = torch.func.functional_call(model, params, (x,))
        return ((out - y) ** 2).mean()

    hess = torch.func.hessian(loss_flat)(flat0)
    evals, evecs = torch.linalg.eigh(hess)
    top = int(torch.argmax(evals.abs()))
    gap = float(torch.sort(evals.abs(), descending=True).values[1] / evals.abs()[top])
    assert gap < 0.5  # power iteration's error shrinks like gap^k (here gap = 0.31)
    iters = math.ceil(math.log(1e-14) / math.log(gap))  # gap^iters <= 1e-14

    opt = EigenSAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, fd_step=1e-5)

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    lam = opt.power_iteration(closure, iters=iters)
    v = opt.eigenvector()
    # Central differences have O(h^2 |L'''|) ~ 1e-10 error in Hv; the vector is a
    # unit-norm fixed point, so |cos| agrees to ~1e-10 and lambda to ~1e-9 relative.
    assert abs(float(v @ evecs[:, top])) == pytest.approx(1.0, abs=1e-9)
    assert lam == pytest.approx(float(evals[top]), rel=1e-8)
    # The weights were restored bitwise.
    assert torch.equal(torch.cat([p.detach().ravel() for p in model.parameters()]), flat0)


# ------------------------------------ RSAM lowers the Rényi surrogate
@pytest.mark.parametrize(("alpha", "direction"), [(2.0, -1), (1.2, -1), (0.5, +1), (0.75, +1)])
def test_rsam_moves_renyi_regularizer_where_sgd_does_not(alpha, direction):
    """Isotropic quadratic L = c/2 ||theta||^2: SGD rescales g, so R_alpha(g) is constant.

    RSAM's extra step -lr*c*eps changes R_alpha by (to first order)
    -2 alpha lr rho c^2 (||w||^2 - R ||g||^-2 g^T w) * sign(alpha - 1) with
    w = sign(g)|g|^{2 alpha - 1}/||g||^{2 alpha}, and ||w||^2 >= R^2/||g||^2 = R g^T w/||g||^2
    by Cauchy-Schwarz: R_alpha falls for alpha > 1 and rises for alpha < 1, i.e.
    the surrogate sharpness -H_alpha(diag g^2) = log R_alpha / (alpha - 1) falls on
    both sides, at every step.
    """
    c = 1.0
    start = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.2], dtype=DT)

    def run(rho):
        th = nn.Parameter(start.clone())
        opt = RSAM([th], torch.optim.SGD, rho=rho, alpha=alpha, lr=0.1)
        rs = [renyi_gradient_regularizer(c * th.detach(), alpha)]
        for _ in range(10):

            def closure():
                opt.zero_grad()
                loss = 0.5 * c * (th**2).sum()
                loss.backward()
                return loss

            opt.step(closure)
            rs.append(renyi_gradient_regularizer(c * th.detach(), alpha))
        return np.array(rs)

    sgd, rsam = run(0.0), run(0.05)
    np.testing.assert_allclose(sgd, sgd[0], rtol=1e-12)
    steps = np.diff(rsam) * direction
    assert (steps > 0).all(), steps
    assert (rsam[-1] - sgd[-1]) * direction > 1e-4 * sgd[0]


# ----------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_batchnorm_stats_untouched_by_second_pass(kind):
    x, y = _data()
    model = _mlp()
    opt = KINDS[kind](model.parameters(), model, 0.5, lr=0.1)
    bn = model[1]
    ref = _mlp()
    ref(x)  # one train-mode forward at the same weights: the expected statistics
    opt.step(_closure(opt, model, x, y))
    assert torch.equal(bn.running_mean, ref[1].running_mean)
    assert torch.equal(bn.running_var, ref[1].running_var)
    assert int(bn.num_batches_tracked) == 1
    # Without the model the second (perturbed) pass does update them: the test can fail.
    model2 = _mlp()
    opt2 = KINDS[kind](model2.parameters(), None, 0.5, lr=0.1)
    opt2.step(_closure(opt2, model2, x, y))
    assert int(model2[1].num_batches_tracked) > 1
    assert not torch.equal(model2[1].running_mean, ref[1].running_mean)


def test_frozen_bn_stats_restores_cumulative_average_mode():
    bn = nn.BatchNorm1d(4, momentum=None).to(DT)
    x = torch.randn(8, 4, dtype=DT)
    bn(x)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    with frozen_bn_stats(bn):
        bn(2 * x + 1)
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k])


# ---------------------------------------- schedulers and state dicts
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_scheduler_and_state_dict_round_trip(kind):
    x, y = _data()

    def make():
        m = _mlp()
        o = KINDS[kind](m.parameters(), m, 0.3, sgd_epochs=1, **SGD_KW)
        s = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10)
        return m, o, s

    def train(m, o, s, steps):
        for _ in range(steps):
            o.step(_closure(o, m, x, y))
            s.step()

    m, o, s = make()
    train(m, o, s, 2)
    o.on_epoch_end(0)  # the switch to the perturbed method happens here
    train(m, o, s, 2)
    saved = (
        {k: v.clone() for k, v in m.state_dict().items()},
        o.state_dict(),
        s.state_dict(),
    )
    import copy

    saved = copy.deepcopy(saved)
    train(m, o, s, 3)
    lr_ref = o.param_groups[0]["lr"]
    assert o.base_optimizer.param_groups[0]["lr"] == lr_ref  # shared with the base
    assert lr_ref == pytest.approx(0.1 * (1 + math.cos(math.pi * 7 / 10)) / 2, rel=1e-12)

    m2, o2, s2 = make()
    m2.load_state_dict(saved[0])
    o2.load_state_dict(saved[1])
    s2.load_state_dict(saved[2])
    assert o2.perturbation_active and o2.epochs_done == 1
    assert o2.param_groups is o2.base_optimizer.param_groups
    train(m2, o2, s2, 3)
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert o2.param_groups[0]["lr"] == lr_ref


def test_load_state_dict_rejects_foreign_dict():
    model = _mlp()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    plain = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict(plain.state_dict())


# ------------------------------------------------- degenerate gradients
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_zero_gradient_gives_clean_step(kind):
    model = _mlp(bn=False)
    opt = KINDS[kind](model.parameters(), model, 0.5, lr=0.1, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad()
        loss = 0.0 * model(torch.ones(2, 5, dtype=DT)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    for p, w in zip(model.parameters(), before):
        assert torch.equal(p.detach(), w)
    assert opt.num_clean_steps == 1 and opt.last_perturbation_norm == 0.0


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_nonfinite_gradient_does_not_perturb(kind):
    model = _mlp(bn=False)
    opt = KINDS[kind](model.parameters(), model, 0.5, lr=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    for i, p in enumerate(model.parameters()):
        p.grad = torch.full_like(p, float("nan") if i == 0 else 1.0)
    opt.first_step()
    # No perturbation was applied: the weights are untouched and finite.
    for p, w in zip(model.parameters(), before):
        assert torch.equal(p.detach(), w)
    assert opt.num_clean_steps == 1 and opt.last_perturbation_norm == 0.0
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.second_step()
    for p, w in zip(model.parameters(), before):
        assert torch.equal(p.detach(), w)


# --------------------------------------------------------------- switch
def test_switch_after_sgd_epochs():
    x, y = _data()
    model = _mlp()
    opt = RSAM(model.parameters(), torch.optim.SGD, rho=0.5, alpha=1.2, sgd_epochs=2, lr=0.1)
    ref = _mlp()
    base = torch.optim.SGD(ref.parameters(), lr=0.1)
    for epoch in range(2):
        assert not opt.perturbation_active
        opt.step(_closure(opt, model, x, y))
        base.step(_closure(base, ref, x, y))
        assert opt.last_perturbation_norm == 0.0
        switched = opt.on_epoch_end(epoch)
        assert switched == (epoch == 1)
    # The SGD phase is exactly the base optimizer (one pass per step, BN included).
    for a, b in zip(ref.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert opt.perturbation_active and opt.switched_at_epoch == 2
    opt.step(_closure(opt, model, x, y))
    assert opt.last_perturbation_norm > 0


def test_switch_on_validation_accuracy():
    model = _mlp()
    opt = RSAM(
        model.parameters(),
        torch.optim.SGD,
        rho=0.5,
        sgd_epochs=None,
        switch_accuracy=0.3,
        lr=0.1,
    )
    assert not opt.perturbation_active
    assert not opt.on_epoch_end(0, val_acc=0.25)
    assert not opt.on_epoch_end(1, val_acc=0.30)  # must exceed the threshold
    assert opt.on_epoch_end(2, val_acc=0.31)
    assert opt.switched_at_epoch == 3
    with pytest.raises(ValueError, match="val_acc"):
        RSAM(
            model.parameters(), torch.optim.SGD, sgd_epochs=None, switch_accuracy=0.3, lr=0.1
        ).on_epoch_end(0)
    # Both rules: whichever comes first.
    opt2 = RSAM(model.parameters(), torch.optim.SGD, sgd_epochs=3, switch_accuracy=0.9, lr=0.1)
    assert [opt2.on_epoch_end(val_acc=0.5) for _ in range(3)] == [False, False, True]


# --------------------------------------------------------------- errors
def test_clear_errors():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="rho"):
        SAM(p, torch.optim.SGD, rho=-0.1, lr=0.1)
    with pytest.raises(ValueError, match="alpha"):
        RSAM(p, torch.optim.SGD, alpha=0.0, lr=0.1)
    with pytest.raises(ValueError, match="alpha"):
        RSAM(p, torch.optim.SGD, alpha=-1.0, lr=0.1)
    with pytest.raises(ValueError, match="alpha >= 0.5"):
        RSAM(p, torch.optim.SGD, alpha=0.3, radius="fixed", lr=0.1)
    with pytest.raises(ValueError, match="radius"):
        RSAM(p, torch.optim.SGD, radius="ball", lr=0.1)
    with pytest.raises(TypeError, match="base_optimizer"):
        SAM(p, torch.optim.SGD(p, lr=0.1), lr=0.1)
    with pytest.raises(TypeError, match="base_optimizer"):
        RSAM(p, nn.Linear, lr=0.1)
    with pytest.raises(ValueError, match="eta"):
        ASAM(p, torch.optim.SGD, eta=-1.0, lr=0.1)
    with pytest.raises(ValueError, match="freq"):
        EigenSAM(p, torch.optim.SGD, freq=0, lr=0.1)
    with pytest.raises(ValueError, match="switch_accuracy"):
        RSAM(p, torch.optim.SGD, switch_accuracy=30, lr=0.1)
    with pytest.raises(ValueError, match="sgd_epochs"):
        RSAM(p, torch.optim.SGD, sgd_epochs=None, lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        SAM(p, torch.optim.SGD, lr=0.1).step()


# -------------------------------------------------------------- factory
@pytest.mark.parametrize(
    ("name", "cls", "kw"),
    [
        ("sgd", torch.optim.SGD, {}),
        ("adam", torch.optim.Adam, {}),
        ("sam", SAM, {"rho": 0.05}),
        ("asam", ASAM, {"rho": 0.5, "eta": 0.01}),
        ("Eigen-SAM", EigenSAM, {"rho": 0.05, "eigvec_weight": 0.2, "freq": 100}),
        ("rsam", RSAM, {"rho": 0.65, "alpha": 1.2, "sgd_epochs": 5}),
    ],
)
def test_build_optimizer(name, cls, kw):
    model = _mlp()
    opt = build_optimizer(name, model, lr=0.1, weight_decay=5e-4, **kw)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["weight_decay"] == 5e-4
    if cls not in (torch.optim.SGD, torch.optim.Adam):
        assert opt.model is model and opt.param_groups[0]["momentum"] == 0.9
        assert opt.param_groups[0]["rho"] == kw["rho"]


def test_build_optimizer_config_dict_form():
    """The form renyilib.experiments.train uses: build_optimizer(name, model, params, config)."""
    model = _mlp()
    params = [p for p in model.parameters() if p.requires_grad]
    cfg = {"lr": 0.05, "momentum": 0.8, "weight_decay": 1e-4, "rho": 0.6, "alpha": 1.1}
    opt = build_optimizer("rsam", model, params, cfg)
    assert isinstance(opt, RSAM) and opt.alpha == 1.1
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["weight_decay"], g["rho"]) == (0.05, 0.8, 1e-4, 0.6)
    with pytest.raises(TypeError, match="both"):
        build_optimizer("sam", model, params, {"lr": 0.1}, lr=0.2)
    with pytest.raises(TypeError, match="lr"):
        build_optimizer("sam", model)


def test_build_optimizer_errors():
    model = _mlp()
    with pytest.raises(ValueError, match="name"):
        build_optimizer("lbfgs", model, lr=0.1)
    with pytest.raises(TypeError, match="rho"):
        build_optimizer("sgd", model, lr=0.1, rho=0.05)
    with pytest.raises(ValueError, match="base"):
        build_optimizer("sam", model, lr=0.1, base="rmsprop")


def test_rsam_warns_once_when_its_only_switch_never_gets_a_validation_accuracy():
    import warnings

    from renyilib.optim import RSAM

    w = torch.nn.Parameter(torch.ones(3))
    opt = RSAM([w], torch.optim.SGD, rho=0.1, alpha=1.5, lr=0.1, sgd_epochs=None,
               switch_accuracy=0.5)  # fmt: skip
    with pytest.warns(RuntimeWarning, match="needs a validation accuracy"):
        opt.on_epoch_end(0, val_acc=float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.on_epoch_end(1, val_acc=float("nan"))  # once only
        assert opt.on_epoch_end(2, val_acc=0.9) is True
