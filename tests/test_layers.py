"""The two-layer contract: the core library never imports the experiments layer.

Checked two ways: statically (no module of the core names
``renyilib.experiments`` in an import statement, at any depth of the code) and
at run time (``import renyilib`` in a fresh interpreter loads neither the
experiments layer nor YAML, scikit-learn, seaborn, torchvision or matplotlib).
Also: no private name is imported across modules anywhere in the package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "renyilib"
CORE = sorted(p for p in PACKAGE.glob("*.py"))
ALL = sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """Every ``import``/``from ... import`` in ``path`` as (module, names, line)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            out.append(
                ("." * node.level + (node.module or ""), [a.name for a in node.names], node.lineno)
            )
    return out


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_never_imports_experiments(path):
    for module, names, line in _imports(path):
        assert not module.startswith("."), f"{path.name}:{line}: relative import {module!r}"
        bad = module.startswith("renyilib.experiments") or (
            module == "renyilib" and "experiments" in names
        )
        assert not bad, (
            f"{path.name}:{line} imports {module} {names}: the core must not import the "
            "experiments layer (move the code to renyilib/experiments/ or invert the call)"
        )


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_imported_across_modules(path):
    for module, names, line in _imports(path):
        if not module.startswith("renyilib"):
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert (
            not private
        ), f"{path.relative_to(PACKAGE)}:{line} imports private {private} from {module}"


def test_import_renyilib_is_light():
    code = (
        "import sys, renyilib\n"
        "heavy = ['renyilib.experiments', 'yaml', 'sklearn', 'seaborn', 'torchvision',\n"
        "         'matplotlib', 'vit_pytorch', 'papermill']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import renyilib loaded {out.stdout.strip()}"


def test_moved_names_still_resolve_with_a_warning():
    for module in ("yaml", "sklearn", "torchvision"):  # absent in `make core-check`
        pytest.importorskip(module)
    import renyilib
    from renyilib.experiments.data import load_data

    with pytest.warns(DeprecationWarning, match="renyilib.experiments.data"):
        assert renyilib.load_data is load_data
    with pytest.raises(AttributeError, match="no_such_name"):
        renyilib.no_such_name  # noqa: B018


def test_public_api_is_listed():
    import renyilib

    for name in renyilib.__all__:
        assert hasattr(renyilib, name), name
