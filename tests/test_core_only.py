"""The core library on its own: the public API end to end, with only the core's dependencies.

``make core-check`` runs this file (and ``test_layers.py``) in a virtual
environment holding only what ``pip install renyilib`` declares (no
scikit-learn, YAML, torchvision, seaborn, papermill) and the oldest torch the
core is tested with; in the project's own environment it is an ordinary test.
Every value is checked against a dense float64 reference.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import renyilib


def _problem():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    return model, nn.CrossEntropyLoss(), (x, y)


def _dense_hessian(model, loss_fn, data):
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    shapes = [params[n].shape for n in names]
    flat = torch.cat([params[n].reshape(-1) for n in names])

    def loss(theta):
        out, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            out[n] = theta[i : i + k].reshape(s)
            i += k
        return loss_fn(torch.func.functional_call(model, out, (data[0],)), data[1])

    return torch.func.hessian(loss)(flat)


def test_core_api_against_dense_reference():
    model, loss_fn, data = _problem()
    dense = _dense_hessian(model, loss_fn, data)
    n = dense.shape[0]
    op = renyilib.hessian_operator(model, loss_fn, data)
    assert op.shape == (n, n)
    torch.testing.assert_close(op.to_dense(), dense, rtol=1e-10, atol=1e-12)
    eig = np.linalg.eigvalsh(dense.numpy())
    alphas = [0.5, 1.0, 2.0]
    exact = renyilib.renyi_entropy(eig, alphas)
    # full-length Lanczos on one probe is exact up to round-off for the trace of |H|^alpha
    q = renyilib.slq(op, num_probes=30, lanczos_steps=n, seed=0)
    est = np.asarray(q.renyi_entropy(alphas).value)
    assert np.all(np.abs(est - exact) / exact < 0.05), (est, exact)
    df = renyilib.renyi_sharpness(
        model, loss_fn, data, alphas=alphas, blocks="all", num_probes=4, lanczos_steps=5,
        seed=0, progress=False,
    )  # fmt: skip
    assert list(df["alpha"]) == alphas and np.all(np.isfinite(df["sharpness"]))
    top = renyilib.top_eigenpair(op, seed=0)
    assert abs(top.value - eig[-1]) <= 1e-6 * abs(eig[-1])


def test_rsam_step_with_only_core_dependencies():
    model, loss_fn, (x, y) = _problem()
    opt = renyilib.RSAM(model.parameters(), torch.optim.SGD, rho=0.05, alpha=1.5, lr=0.1)
    before = loss_fn(model(x), y).item()

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    for _ in range(20):
        opt.step(closure)
    assert loss_fn(model(x), y).item() < before
