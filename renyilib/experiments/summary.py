"""The book's summary tables, built from data: the claims table and the chapters' run times.

The intro of the book opens with one table: each claim of each reproduced
paper, the paper's number, ours, a verdict, and the section that shows it. Its
rows live in ``book/claims.yml``; *our* numbers are never typed there but
pasted from the values the chapters ``glue`` (read from the committed executed
notebooks), so the table changes when a chapter is regenerated::

    papers:                       # bibliography key -> short name
      renyi_sharpness: Rényi sharpness
    claims:
      - paper: renyi_sharpness
        claim: Per-layer Rényi sharpness correlates with the generalization gap
        where: Figs. 2, 3                      # where the paper makes the claim
        theirs: "τ 0.6–0.9"                    # the paper's number, as it reports it
        ours: "τ {cifar:tau_layers_best_min:.2f}–{cifar:tau_layers_best_max:.2f}"
        verdict: holds                         # one of VERDICTS
        section: cifar#the-correlation-study   # chapter[#heading-anchor] that shows it
        rests_on:                              # optional: what the verdict needs
          - "{cifar:tau_layers_best_min} > 0"

A placeholder ``{chapter:key}`` or ``{chapter:key:format}`` is the value that
``notebooks/<chapter>.ipynb`` glued under ``key`` (formatted like myst-nb's
``{glue:text}``: the text is literal-evaluated, then ``format(value, spec)``).
``ours`` may also be plain text where a chapter shows no single number.
``rests_on`` lists comparisons of glued numbers that the verdict depends on
(:func:`failed_conditions`): when a rerun makes one false, the table is not
rendered (the book does not build) until the verdict is reviewed.

The second table lists each chapter's profile, wall time, date and code
version, from the run record the report driver stores in each executed
chapter (:mod:`renyilib.experiments.report`). The book's Sphinx extension
(``book/_ext/renyibook.py``) renders both tables with the directives
``{claims-table}`` and ``{chapter-runs}``.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from renyilib.experiments.report import METADATA_KEY, toc_chapters

__all__ = [
    "VERDICTS",
    "PLACEHOLDER",
    "ClaimsError",
    "read_glue",
    "format_glued",
    "chapter_title",
    "load_claims",
    "fill_placeholders",
    "chapter_value",
    "failed_conditions",
    "claims_markdown",
    "display_version",
    "chapter_runs_markdown",
]

#: The verdicts a claim can get.
VERDICTS = ("holds", "partly", "does not hold", "not tested at this scale")
_GLUE_PREFIX = "application/papermill.record/"
#: A placeholder ``{chapter:key}`` or ``{chapter:key:format}`` in ``claims.yml``.
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+):([A-Za-z0-9_]+)(?::([^{}]*))?\}")
_FIELDS = ("paper", "claim", "where", "theirs", "ours", "verdict", "section")
_COMPARISON = re.compile(r"^\s*(.+?)\s*(<=|>=|<|>)\s*(.+?)\s*$")


class ClaimsError(ValueError):
    """``claims.yml`` is malformed or refers to a chapter, value or section that does not exist."""


def _notebook(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def read_glue(notebook: str | os.PathLike | dict) -> dict[str, str]:
    """The ``text/plain`` of every value a notebook glued (``myst_nb.glue``), by key.

    Args:
        notebook: Path of an executed ``.ipynb``, or the notebook as a dict.
    """
    nb = notebook if isinstance(notebook, dict) else _notebook(notebook)
    out: dict[str, str] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook")
            if not isinstance(scrap, dict) or "name" not in scrap:
                continue
            prefix = scrap.get("mime_prefix", "")
            data = {k[len(prefix) :]: v for k, v in output.get("data", {}).items()}
            if "text/plain" in data:
                text = data["text/plain"]
                out[scrap["name"]] = "".join(text) if isinstance(text, list) else text
    return out


def format_glued(text: str, spec: str = "") -> str:
    """Format a glued ``text/plain`` value as myst-nb's ``{glue:text}`` does.

    >>> format_glued("0.8312", ".2f"), format_glued("'abc'"), format_glued("12", "d")
    ('0.83', 'abc', '12')
    """
    try:
        value: Any = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if not spec:
        return str(value)
    kind = spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, spec)


def chapter_title(notebook: str | os.PathLike | dict) -> str:
    """The first Markdown heading of a notebook (its title in the book)."""
    nb = notebook if isinstance(notebook, dict) else _notebook(notebook)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        for line in ("".join(source) if isinstance(source, list) else source).splitlines():
            match = re.match(r"#+\s+(.*\S)", line)
            if match:
                return match.group(1)
    return ""


def load_claims(path: str | os.PathLike) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Read and check ``claims.yml``: the papers' short names and the claims.

    Raises:
        ClaimsError: A claim lacks a field, names an unknown paper, or has a
            verdict outside :data:`VERDICTS`.
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    papers = data.get("papers")
    claims = data.get("claims")
    if not isinstance(papers, dict) or not papers:
        raise ClaimsError(f"{path}: 'papers' must map bibliography keys to short names")
    if not isinstance(claims, list) or not claims:
        raise ClaimsError(f"{path}: 'claims' must be a non-empty list")
    for i, claim in enumerate(claims):
        where = f"{path}: claim {i + 1}"
        if not isinstance(claim, dict):
            raise ClaimsError(f"{where} must be a mapping with the fields {_FIELDS}")
        lacking = [f for f in _FIELDS if not str(claim.get(f, "")).strip()]
        if lacking:
            raise ClaimsError(f"{where} ({claim.get('claim', '?')!r}) lacks {lacking}")
        if claim["paper"] not in papers:
            raise ClaimsError(f"{where}: paper {claim['paper']!r} is not one of {sorted(papers)}")
        if claim["verdict"] not in VERDICTS:
            raise ClaimsError(
                f"{where}: verdict must be one of {VERDICTS}, got {claim['verdict']!r}"
            )
        rests_on = claim.get("rests_on", [])
        rests_on = [rests_on] if isinstance(rests_on, str) else rests_on
        if not isinstance(rests_on, list) or not all(
            isinstance(c, str) and _COMPARISON.match(c) for c in rests_on
        ):
            raise ClaimsError(
                f"{where}: rests_on must be comparisons like '{{chapter:key}} > 0', got {rests_on!r}"
            )
    out = []
    for claim in claims:
        entry: dict[str, Any] = {k: str(v) for k, v in claim.items() if k != "rests_on"}
        rests_on = claim.get("rests_on", [])
        entry["rests_on"] = [rests_on] if isinstance(rests_on, str) else list(rests_on)
        out.append(entry)
    return {str(k): str(v) for k, v in papers.items()}, out


def _number(text: str) -> float:
    cleaned = text.replace(",", "").replace("%", "").replace("−", "-").strip()
    try:
        return float(cleaned)
    except ValueError:
        raise ClaimsError(f"{text!r} is not a number") from None


def failed_conditions(conditions: list[str], glued: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The conditions a verdict rests on that are false now (each with its values).

    A condition compares two numbers, each a number or a placeholder:
    ``"{cifar:tau_all_best} < {cifar:tau_best_baseline}"``, ``"{x:n} >= 10"``.
    ``%`` signs and thousands separators in a glued value are ignored.

    Raises:
        ClaimsError: A condition is not a comparison, or a side is not a number.

    >>> failed_conditions(["{c:tau} > 0.5", "{c:tau} < 1"], {"c": {"tau": "0.4"}})
    ['{c:tau} > 0.5 (0.4 > 0.5)']
    """
    ops = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    failed = []
    for condition in conditions:
        match = _COMPARISON.match(condition)
        if match is None:
            raise ClaimsError(f"{condition!r} is not a comparison (<, <=, >, >=)")
        left, op, right = match.groups()
        a = _number(fill_placeholders(left, glued))
        b = _number(fill_placeholders(right, glued))
        if not ops[op](a, b):
            failed.append(f"{condition} ({a:g} {op} {b:g})")
    return failed


def fill_placeholders(text: str, glued: Mapping[str, Mapping[str, str]]) -> str:
    """Replace each ``{chapter:key[:format]}`` in ``text`` by that chapter's glued value.

    Args:
        text: Text with placeholders.
        glued: Glued values by chapter, then key (see :func:`read_glue`).

    Raises:
        ClaimsError: The chapter or the key does not exist, or the format does not apply.

    >>> fill_placeholders("τ = {c:tau:.2f}", {"c": {"tau": "0.8312"}})
    'τ = 0.83'
    """

    def paste(match: re.Match) -> str:
        chapter, key, spec = match.group(1), match.group(2), match.group(3) or ""
        if chapter not in glued:
            raise ClaimsError(
                f"{match.group(0)}: no chapter {chapter!r}; chapters: {sorted(glued)}"
            )
        if key not in glued[chapter]:
            raise ClaimsError(f"{match.group(0)}: chapter {chapter!r} glues no value {key!r}")
        try:
            return format_glued(glued[chapter][key], spec)
        except (TypeError, ValueError) as exc:
            raise ClaimsError(
                f"{match.group(0)}: cannot format {glued[chapter][key]!r}: {exc}"
            ) from None

    return PLACEHOLDER.sub(paste, text)


_VALUE_REFERENCE = re.compile(r"^([A-Za-z0-9_]+):([A-Za-z0-9_]+)(?::(.*))?$")


def chapter_value(
    reference: str, book: str | os.PathLike = "book", chapter_dir: str = "generated"
) -> tuple[str, Path]:
    """A value glued by an executed chapter, for prose outside it (the book's ``{value}`` role).

    Args:
        reference: ``"chapter:key"`` or ``"chapter:key:format"`` (a format as in
            ``{glue:text}``, e.g. ``.3f``).
        book: The book's source folder.
        chapter_dir: Where the executed chapters are (``<book>/<chapter_dir>/<chapter>.ipynb``).

    Returns:
        ``(text, path)``: the formatted value and the notebook it came from.

    Raises:
        ClaimsError: A malformed reference, a chapter that was not executed, an
            unknown key or a format that does not apply.

    >>> import tempfile, json, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "generated").mkdir()
    >>> cell = {"outputs": [{"metadata": {"scrapbook": {"name": "tau"}}, "data": {"text/plain": "0.8312"}}]}
    >>> _ = (d / "generated" / "c.ipynb").write_text(json.dumps({"cells": [cell]}))
    >>> chapter_value("c:tau:.2f", d)[0]
    '0.83'
    """
    match = _VALUE_REFERENCE.match(reference.strip())
    if match is None:
        raise ClaimsError(f"{reference!r}: expected chapter:key or chapter:key:format")
    chapter, key, spec = match.groups()
    path = Path(book) / chapter_dir / f"{chapter}.ipynb"
    if not path.is_file():
        raise ClaimsError(f"{reference!r}: chapter {chapter!r} has no executed copy ({path})")
    placeholder = "{" + f"{chapter}:{key}" + (f":{spec}" if spec else "") + "}"
    return fill_placeholders(placeholder, {chapter: read_glue(path)}), path


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


#: The profile whose numbers the verdicts of ``claims.yml`` were reviewed on: a book of
#: that profile stops when a verdict's ``rests_on`` fails; a book of another profile
#: (the smoke book of the tests) shows the verdict marked with this profile instead.
VERDICT_PROFILE = "cpu"

_PLACEHOLDER_CHAPTER = re.compile(r"\{([A-Za-z0-9_]+):")


def claims_markdown(
    claims_path: str | os.PathLike, book: str | os.PathLike = "book", chapter_dir: str = "generated"
) -> str:
    """The claims table as a MyST Markdown table, with our numbers pasted in.

    Four columns: the claim (linked to the section that shows it) and where the
    paper makes it, the paper's number, ours, the verdict. Claims are grouped by
    paper in the order of ``papers``, each group under a row naming the paper
    with its citation. Links point from the book's root (where ``intro.md``
    is) to ``<chapter_dir>/<chapter>.ipynb[#anchor]``.

    A verdict's ``rests_on`` conditions are enforced when every chapter they
    read ran in :data:`VERDICT_PROFILE`; otherwise the verdict is shown marked
    with that profile (its numbers are another profile's).

    Raises:
        ClaimsError: See :func:`load_claims` and :func:`fill_placeholders`;
            also a ``section`` naming a chapter that is not in the book, or a
            reviewed verdict whose ``rests_on`` no longer holds.
    """
    book = Path(book)
    papers, claims = load_claims(claims_path)
    chapters = toc_chapters(book)
    profiles = {
        name: (
            json.loads((book / chapter_dir / f"{name}.ipynb").read_text())
            .get("metadata", {})
            .get(METADATA_KEY, {})
            .get("profile")
        )
        for name in chapters
        if (book / chapter_dir / f"{name}.ipynb").is_file()
    }
    glued = {
        name: read_glue(book / chapter_dir / f"{name}.ipynb")
        for name in chapters
        if (book / chapter_dir / f"{name}.ipynb").is_file()
    }
    rows: dict[str, list[str]] = {key: [] for key in papers}
    for i, claim in enumerate(claims):
        chapter, _, anchor = claim["section"].partition("#")
        if chapter not in glued:
            raise ClaimsError(
                f"{claims_path}: claim {i + 1} links to chapter {chapter!r}, which is not a "
                f"built chapter of the book ({sorted(glued)})"
            )
        try:
            ours = fill_placeholders(claim["ours"], glued)
            theirs = fill_placeholders(claim["theirs"], glued)
            failed = failed_conditions(claim["rests_on"], glued)
        except ClaimsError as exc:
            raise ClaimsError(f"{claims_path}: claim {i + 1}: {exc}") from None
        used = {chapter} | set(
            _PLACEHOLDER_CHAPTER.findall(" ".join([claim["ours"], *claim["rests_on"]]))
        )
        reviewed = all(profiles.get(c) == VERDICT_PROFILE for c in used)
        if failed and reviewed:
            raise ClaimsError(
                f"{claims_path}: claim {i + 1} ({claim['claim'][:60]!r}): its verdict "
                f"{claim['verdict']!r} rests on {'; '.join(failed)}, which no longer holds: "
                "review the verdict and its conditions"
            )
        verdict = (
            claim["verdict"]
            if reviewed
            else f"{claim['verdict']} (at the {VERDICT_PROFILE} profile)"
        )
        target = f"{chapter_dir}/{chapter}.ipynb" + (f"#{anchor}" if anchor else "")
        rows[claim["paper"]].append(
            f"| [{_cell(claim['claim'])}]({target}) ({_cell(claim['where'])}) "
            f"| {_cell(theirs)} | {_cell(ours)} | **{verdict}** |"
        )
    lines = [
        "| claim (where the paper makes it) | the paper | ours | verdict |",
        "|---|---|---|---|",
    ]
    for key, paper_rows in rows.items():
        if paper_rows:
            lines.append(f"| **{_cell(papers[key])}** {{cite:p}}`{key}` | | | |")
            lines.extend(paper_rows)
    return "\n".join(lines) + "\n"


def display_version(version: str) -> str:
    """A code version as the book shows it (``-dirty`` spelled out).

    >>> display_version("0.1.0+gabc123-dirty")
    '0.1.0+gabc123 (with uncommitted changes)'
    """
    if version.endswith("-dirty"):
        return f"{version[: -len('-dirty')]} (with uncommitted changes)"
    return version


def _version_cell(version: str) -> str:
    shown = display_version(version)
    code, _, rest = shown.partition(" ")
    return f"`{code}` {rest}".strip()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def chapter_runs_markdown(book: str | os.PathLike = "book", chapter_dir: str = "generated") -> str:
    """A MyST table of each chapter's run: profile, wall time, date (UTC), code version.

    Chapters without an executed copy or a run record are listed as such (the
    book's extension refuses to build with them in any case).
    """
    book = Path(book)
    rows = [
        "| chapter | profile | wall time | run (UTC) | code version |",
        "|---|---|---|---|---|",
    ]
    total = 0.0
    machines = set()
    for name in toc_chapters(book):
        path = book / chapter_dir / f"{name}.ipynb"
        if not path.is_file():
            rows.append(f"| {name} | not run | | | |")
            continue
        nb = _notebook(path)
        record = nb.get("metadata", {}).get(METADATA_KEY) or {}
        title = _cell(chapter_title(nb) or name)
        link = f"[{title}]({chapter_dir}/{name}.ipynb)"
        if not record:
            rows.append(f"| {link} | no run record | | | |")
            continue
        seconds = float(record.get("elapsed_s", 0.0))
        total += seconds
        machines.add(
            f"{record.get('machine', '?')}, {record.get('cpus', '?')} CPUs, "
            f"{record.get('device', '?')}, torch {record.get('torch', '?')}"
        )
        rows.append(
            f"| {link} | {record.get('profile', '?')} | {_duration(seconds)} "
            f"| {record.get('executed_utc', '?')} "
            f"| {_version_cell(str(record.get('code_version', '?')))} |"
        )
    rows.append(f"| **total** | | **{_duration(total)}** | | |")
    text = "\n".join(rows) + "\n"
    if machines:
        text += "\nMachine: " + "; ".join(sorted(machines)) + ".\n"
    return text
