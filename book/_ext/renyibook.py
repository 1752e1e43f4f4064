"""Sphinx extension of the book: refuse missing or stale chapters; render the summary tables.

* At ``builder-inited`` every chapter of ``_toc.yml`` (``generated/<name>``) is
  checked with :func:`renyilib.experiments.report.chapter_status`: a chapter
  without an executed copy, without the report driver's run record, or stale
  (a ``_config.yml`` section it read, or its notebook, changed since it ran)
  stops the build with an error naming the chapter and the command that
  regenerates it: plain ``jupyter-book build book/`` fails too, not only
  ``--warningiserror``.
* Inline scripts that the theme's extensions register twice (Jupyter Book 1.0
  with Sphinx 7.4 lists each ``add_js_file(None, body=...)`` once as ``None``
  and once as ``''``: ``const THEBE_JS_URL`` declared twice is a JavaScript
  error on every page) are listed once.
* ``{claims-table}`` renders ``claims.yml`` (the book's summary of claims) and
  ``{chapter-runs}`` the chapters' run records, both from
  :mod:`renyilib.experiments.summary`.
* The role ``{value}`chapter:key[:format]``` pastes a value glued by an executed
  chapter into prose outside it (the intro, the notes), so a number is stated
  in one place only (:func:`renyilib.experiments.summary.chapter_value`); an
  unknown chapter or key stops the build.
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError

try:
    from renyilib.experiments import report, summary
except ImportError as exc:  # pragma: no cover - only without the package installed
    raise ExtensionError(
        "the book's extension needs renyilib (with its experiments extra); run `make install`"
    ) from exc


def _check_chapters(app) -> None:
    problems = report.book_problems(app.srcdir)
    if problems:
        raise ExtensionError(
            "the book has chapters that are missing or stale:\n  " + "\n  ".join(problems)
        )


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, unique = set(), []
    for js in context.get("script_files", []):
        attrs = getattr(js, "attributes", {})
        key = (getattr(js, "filename", js) or "", tuple(sorted(attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def _markdown(directive: Directive, text: str, depends: list[Path]):
    env = directive.state.document.settings.env
    for path in depends:
        env.note_dependency(str(path))
    node = nodes.container()
    directive.state.nested_parse(StringList(text.splitlines()), directive.content_offset, node)
    return node.children


class ClaimsTable(Directive):
    """``{claims-table}`` [path]: the claims table from ``claims.yml`` (default path)."""

    optional_arguments = 1

    def run(self):
        srcdir = Path(self.state.document.settings.env.srcdir)
        path = srcdir / (self.arguments[0] if self.arguments else "claims.yml")
        try:
            text = summary.claims_markdown(path, srcdir)
        except (summary.ClaimsError, FileNotFoundError) as exc:
            raise ExtensionError(f"{{claims-table}}: {exc}") from exc
        chapters = [srcdir / "generated" / f"{n}.ipynb" for n in report.toc_chapters(srcdir)]
        return _markdown(self, text, [path, *chapters])


class ChapterRuns(Directive):
    """``{chapter-runs}``: each chapter's profile, wall time, date and code version."""

    def run(self):
        srcdir = Path(self.state.document.settings.env.srcdir)
        text = summary.chapter_runs_markdown(srcdir)
        chapters = [srcdir / "generated" / f"{n}.ipynb" for n in report.toc_chapters(srcdir)]
        return _markdown(self, text, chapters)


def value_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{value}`chapter:key[:format]```: the chapter's glued value as text."""
    env = inliner.document.settings.env
    try:
        value, path = summary.chapter_value(text, env.srcdir)
    except summary.ClaimsError as exc:
        raise ExtensionError(f"{env.docname}:{lineno}: {{value}}: {exc}") from exc
    env.note_dependency(str(path))
    return [nodes.Text(value)], []


def setup(app):
    app.connect("builder-inited", _check_chapters)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.add_directive("claims-table", ClaimsTable)
    app.add_role("value", value_role)
    app.add_directive("chapter-runs", ChapterRuns)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
