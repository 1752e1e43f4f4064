"""Device and dtype handling of the core library, on the CPU.

The contract (DEVELOPERS.md, "Devices"): tensors the library creates follow
the model's parameters' device and dtype, never ``.cuda()`` or the default
device. Without a GPU this is checked in three ways:

* dtype: a float64 model gives float64 products, Lanczos vectors,
  eigenvectors and optimizer states, a float32 model float32 ones, whatever
  the input vector's dtype and ``torch.get_default_dtype()``;
* device: with ``torch.set_default_device("meta")`` standing in for "some
  other device than the model's", any tensor created without an explicit
  device lands on ``meta`` and the computation fails (a meta tensor has no
  data), exactly as a CPU-generator draw on the default device fails for a
  user who set ``torch.set_default_device("cuda")``; every public entry
  point must run and give the same numbers as without it;
* source: no ``.cuda()`` call and no ``"cuda"`` literal in the core's code.

Probes are drawn from a seeded CPU generator in float64 and then moved, so a
float32 and a float64 run of the same model see the same probes.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from renyilib import measures
from renyilib.hessian import hessian_operator
from renyilib.lanczos import lanczos, slq, top_eigenpair, top_eigenpairs
from renyilib.optim import RSAM, SAM, EigenSAM
from renyilib.renyi import renyi_sharpness

CORE = Path(__file__).resolve().parent.parent / "renyilib"
#: The keyword of hessian_operator that picks the product backend (``method`` before the rename).
BACKEND_KW = "backend" if "backend" in inspect.signature(hessian_operator).parameters else "method"
DTYPES = [torch.float32, torch.float64]


def model_and_data(dtype: torch.dtype = torch.float64):
    """Linear-Tanh-Linear (43 parameters) in eval mode and 16 samples, in ``dtype`` on the CPU."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=gen, dtype=torch.float64).to(dtype)
    y = torch.randint(0, 3, (16,), generator=gen)
    return model, nn.CrossEntropyLoss(), (x, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_operator_products_follow_the_model_dtype(dtype):
    model, loss, data = model_and_data(dtype)
    op = hessian_operator(model, loss, data)
    n = op.shape[0]
    assert op.dtype == dtype and op.device == torch.device("cpu")
    other = torch.float64 if dtype == torch.float32 else torch.float32
    for v in (torch.ones(n, dtype=other), np.ones(n), torch.ones(n, 3, dtype=other)):
        out = op @ v
        assert out.dtype == dtype and out.device.type == "cpu"
    assert op.gradient().dtype == dtype
    H = op.to_dense()
    assert H.dtype == dtype and H.shape == (n, n)
    mv = op.to_scipy().matvec(np.ones(n))  # the scipy view is float64 numpy by design
    assert mv.dtype == np.float64
    # the model itself is left as it was
    assert all(p.dtype == dtype for p in model.parameters())


@pytest.mark.parametrize("dtype", DTYPES)
def test_lanczos_vectors_and_eigenvectors_follow_the_operator(dtype):
    model, loss, data = model_and_data(dtype)
    op = hessian_operator(model, loss, data)
    v0 = np.ones(op.shape[0])  # a float64 numpy start vector
    res = lanczos(op, 6, v0, return_basis=True)
    assert res.basis.dtype == dtype and res.basis.device.type == "cpu"
    assert res.alpha.dtype == np.float64  # scalars of T are float64 by design
    pair = top_eigenpair(op, tol=1e-3)
    assert pair.vector.dtype == dtype
    pairs = top_eigenpairs(op, 2, which="LM", tol=1e-3)
    assert pairs.vectors.dtype == dtype and pairs.vectors.shape == (op.shape[0], 2)


def test_default_dtype_does_not_leak_into_a_float32_model():
    model, loss, data = model_and_data(torch.float32)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        op = hessian_operator(model, loss, data)
        n = op.shape[0]
        assert (op @ torch.ones(n)).dtype == torch.float32  # a float64 vector in
        assert op.to_dense().dtype == torch.float32
        assert lanczos(op, 4, np.ones(n), return_basis=True).basis.dtype == torch.float32
        assert top_eigenpair(op, tol=1e-3).vector.dtype == torch.float32
    finally:
        torch.set_default_dtype(old)


def test_same_seed_same_probes_in_float32_and_float64():
    # Probes are drawn in float64 on the CPU and cast: the float32 quadrature differs
    # from the float64 one by rounding only (measured ~1e-6 relative here).
    q = {}
    for dtype in DTYPES:
        model, loss, data = model_and_data(dtype)
        q[dtype] = slq(hessian_operator(model, loss, data), 4, 8, seed=3)
    np.testing.assert_allclose(q[torch.float32].nodes, q[torch.float64].nodes, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(
        q[torch.float32].weights, q[torch.float64].weights, rtol=1e-3, atol=1e-5
    )
    # and the same seed twice is bit-identical
    model, loss, data = model_and_data(torch.float64)
    again = slq(hessian_operator(model, loss, data), 4, 8, seed=3)
    assert np.array_equal(again.nodes, q[torch.float64].nodes)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sam", "rsam", "eigensam"])
def test_optimizer_steps_keep_parameter_and_state_dtypes(dtype, opt):
    model, loss, (x, y) = model_and_data(dtype)
    cls, kw = {"sam": (SAM, {}), "rsam": (RSAM, {"alpha": 1.2}), "eigensam": (EigenSAM, {})}[opt]
    optimizer = cls(model.parameters(), torch.optim.SGD, lr=0.1, rho=0.05, momentum=0.9, **kw)

    def closure():
        optimizer.zero_grad()
        value = loss(model(x), y)
        value.backward()
        return value

    for _ in range(2):
        optimizer.step(closure)
    assert all(p.dtype == dtype and p.device.type == "cpu" for p in model.parameters())
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                assert value.dtype == dtype and value.device.type == "cpu"


# --------------------------------------------------------------------------- default device


def _cases():
    """Per case: ``fn(model, loss, data)`` calling the library; tensors in only with ``device=``."""

    def ones(n, *k):
        return torch.ones(n, *k, dtype=torch.float64, device="cpu")

    def op_products(**kw):
        def run(model, loss, data):
            op = hessian_operator(model, loss, data, **kw)
            return [op @ ones(op.shape[0]), op @ ones(op.shape[0], 3), op.gradient()]

        return run

    def to_dense(model, loss, data):
        return [hessian_operator(model, loss, data).to_dense()]

    def optimizer_step(cls, **kw):
        def step(model, loss, data):
            x, y = data
            optimizer = cls(model.parameters(), torch.optim.SGD, lr=0.1, rho=0.05, **kw)

            def closure():
                optimizer.zero_grad()
                value = loss(model(x), y)
                value.backward()
                return value

            optimizer.step(closure)
            return [p.detach() for p in model.parameters()]

        return step

    def renyi(method):
        def run(model, loss, data):
            df = renyi_sharpness(
                model, loss, data, [0.5, 2.0], "both", 4, 5, spectrum=method, progress=False
            )
            return [df["entropy"].to_numpy()]

        return run

    def measure(fn, **kw):
        def run(model, loss, data):
            out = fn(model, loss, data, **kw)
            return [v for v in out.values() if isinstance(v, float)]

        return run

    def slq_nodes(**kw):
        return lambda m, lo, d: [slq(hessian_operator(m, lo, d), 4, 5, seed=0, **kw).nodes]

    return {
        "operator": op_products(),
        **{f"operator-{b}": op_products(**{BACKEND_KW: b}) for b in ("graph", "jvp", "linearize")},
        "to_dense": to_dense,
        "slq": slq_nodes(),
        "slq-deflate": slq_nodes(deflate=2),
        "top_eigenpair": lambda m, lo, d: [top_eigenpair(hessian_operator(m, lo, d)).vector],
        "renyi_sharpness": renyi("slq"),
        "renyi_sharpness-exact": renyi("exact"),
        "hessian_trace": measure(measures.hessian_trace, seed=0),
        "lambda_max": measure(measures.lambda_max),
        "fisher_rao_norm": measure(measures.fisher_rao_norm),
        "sam_sharpness": measure(measures.sam_sharpness, m=8, steps=2, seed=0),
        "sam": optimizer_step(SAM),
        "rsam": optimizer_step(RSAM, alpha=1.2),
        "eigensam": optimizer_step(EigenSAM, freq=1, power_iters=1),
    }


CASES = _cases()


@contextlib.contextmanager
def default_device(device: str):
    """``torch.set_default_device(device)`` inside the block, restored afterwards."""
    old = torch.get_default_device()
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(old)


@pytest.mark.parametrize("case", list(CASES))
def test_the_default_device_is_never_used(case):
    # every draw from a CPU generator says device="cpu", every index tensor the
    # operator's device: a meta default device changes nothing
    reference = CASES[case](*model_and_data())
    model, loss, data = model_and_data()  # built on the CPU, before the switch
    with default_device("meta"):
        got = CASES[case](model, loss, data)
    assert len(got) == len(reference) > 0
    for g, r in zip(got, reference):
        if isinstance(g, torch.Tensor):
            assert g.device.type == "cpu" and g.dtype == torch.float64
            g, r = g.detach().numpy(), r.detach().numpy()
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


def test_the_meta_default_device_catches_an_implicit_allocation():
    # the check above is not vacuous: a draw without device= fails under it
    with default_device("meta"), pytest.raises((RuntimeError, NotImplementedError)):
        v = torch.randn(3, generator=torch.Generator().manual_seed(0))
        v.to("cpu")


# --------------------------------------------------------------------------- the source


def cuda_uses(source: str, name: str = "<source>") -> list[str]:
    """``.cuda`` attribute uses and ``"cuda"`` / ``"cuda:N"`` string literals in Python source."""
    found = []
    literal = re.compile(r"^cuda(:\d+)?$")
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.Attribute) and node.attr == "cuda":
            found.append(f"{name}:{node.lineno} .cuda")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if literal.match(node.value):
                found.append(f"{name}:{node.lineno} {node.value!r}")
    return found


def test_core_source_has_no_cuda_calls_or_literals():
    modules = sorted(CORE.glob("*.py"))  # the core only: renyilib/experiments is not scanned
    assert {"hessian.py", "lanczos.py", "renyi.py", "measures.py", "optim.py"} <= {
        p.name for p in modules
    }
    assert [u for p in modules for u in cuda_uses(p.read_text(), p.name)] == []


def test_the_source_scan_flags_both_forms():
    bad = "import torch\nx = torch.zeros(2).cuda()\ny = torch.zeros(2, device='cuda:0')\n"
    assert cuda_uses(bad) == ["<source>:2 .cuda", "<source>:3 'cuda:0'"]
    assert cuda_uses('"""Runs on cuda devices."""\nz = "cpu"\n') == []
