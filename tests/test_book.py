"""The book as a reader gets it: every chapter committed and fresh, every page sound in a browser.

* The committed chapters (``book/generated/*.ipynb``) exist for every toc
  entry, carry the report driver's run record, ran in the ``cpu`` profile, and
  are not stale (:func:`renyilib.experiments.report.chapter_status`).
* The intro's claims table renders from ``book/claims.yml`` and the chapters'
  glued values.
* Every page of the built book (``book/_build/html``, built here if absent;
  the smoke book ``build/smoke-book/_build/html`` too when ``make smoke-book``
  built it) is opened in headless Debian Chromium through selenium, with the
  network blocked, and must show: no JavaScript console error, no request
  beyond the local server, every ``<img>`` loaded, every formula typeset by
  MathJax (no TeX error), no traceback, error or stderr output, no build
  machine path, no sidebar link or in-page link that does not resolve. A
  screenshot of every page goes to ``<html>/../screenshots/``.

The browser part skips (with the reason) only where chromium, chromedriver or
selenium is absent; ``.ci/run`` installs them, so in CI it runs.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from renyilib.experiments import report, summary

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
BOOKS = {"book": BOOK, "smoke": ROOT / "build" / "smoke-book"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# Text that must never reach a page: build-machine paths, and our own process's words.
LEAKS = re.compile(r"/work/|/root/|/home/|/tmp/|site-packages|-dirty\b|the issue's")
# Output areas of an executed cell that show a failure.
ERROR_SELECTORS = (
    "div.output.traceback, div.output.error, div.output.stderr, .cell_output .stderr, "
    "div.system-message, .problematic"
)
MAX_SCREENSHOT_HEIGHT = 20000


# --- the committed chapters -------------------------------------------------


def test_every_chapter_is_committed_and_fresh():
    problems = report.book_problems(BOOK)
    assert not problems, "\n".join(problems)


def test_committed_chapters_ran_in_the_cpu_profile():
    wrong = []
    for name in report.toc_chapters(BOOK):
        path = BOOK / "generated" / f"{name}.ipynb"
        record = report.chapter_metadata(path) if path.is_file() else None
        if record is not None and record.get("profile") != "cpu":
            wrong.append(f"{name}: {record.get('profile')} (`make report NOTEBOOKS={name}`)")
    assert not wrong, "committed chapters must be the cpu profile's: " + ", ".join(wrong)


def test_committed_chapters_are_light_and_their_images_fit_the_page():
    """Images at most 1,600 px wide (2x the 750 px text column); a chapter under 3 MB."""
    too_big = []
    for path in sorted((BOOK / "generated").glob("*.ipynb")):
        if path.stat().st_size > 3_000_000:
            too_big.append(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB")
        for cell in json.loads(path.read_text())["cells"]:
            for out in cell.get("outputs", []):
                png = out.get("data", {}).get("image/png")
                if png:
                    raw = base64.b64decode("".join(png) if isinstance(png, list) else png)
                    width, height = struct.unpack(">II", raw[16:24])
                    if width > 1600:
                        too_big.append(f"{path.name}: a {width}x{height} px image")
    assert not too_big, too_big


def test_claims_table_renders_from_the_chapters():
    text = summary.claims_markdown(BOOK / "claims.yml", BOOK)
    _, claims = summary.load_claims(BOOK / "claims.yml")
    rows = [r for r in text.strip().splitlines()[2:] if "](generated/" in r]
    assert len(rows) == len(claims)
    for row in rows:
        assert not summary.PLACEHOLDER.search(row), row


# --- the browser -------------------------------------------------------------


def _built_html(which: str) -> Path:
    book = BOOKS[which]
    html = book / "_build" / "html"
    if (html / "intro.html").is_file():
        return html
    if which == "smoke":
        pytest.skip("the smoke book is not built (`make smoke-book` builds it)")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run(
        [str(jb), "build", str(book), "--warningiserror", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert (
        proc.returncode == 0
    ), f"jupyter-book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    return html


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # silence the per-request log
        pass


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Debian chromium and chromium-driver are not installed (.ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="renyi-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--hide-scrollbars",
        "--window-size=1280,900",
        # The network is blocked: every name but localhost fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def serve():
    servers = []

    def start(html: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(html))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://localhost:{server.server_port}/"

    yield start
    for server in servers:
        server.shutdown()


def _pages(html: Path) -> list[str]:
    """Every page of a built book but ``index.html`` (a redirect to the intro, checked apart)."""
    skip = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
    return sorted(
        str(p.relative_to(html))
        for p in html.rglob("*.html")
        if not skip & set(p.relative_to(html).parts) and p.relative_to(html) != Path("index.html")
    )


def _screenshot(driver, path: Path) -> None:
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width, height = int(size["width"]), min(int(size["height"]), MAX_SCREENSHOT_HEIGHT)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


_WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) { done("none"); }
else { MathJax.startup.promise.then(() => done("typeset"), (e) => done("error: " + e)); }
"""

_PAGE_FACTS = """
const math = [...document.querySelectorAll('span.math, div.math')];
const links = (sel) => [...document.querySelectorAll(sel)].map(a => a.href);
return {
  images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
                              .map(i => i.getAttribute('src')),
  n_images: document.images.length,
  n_math: math.length,
  untypeset: math.filter(m => !m.querySelector('mjx-container'))
                 .map(m => m.textContent.slice(0, 80)),
  tex_errors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 80)),
  error_outputs: [...document.querySelectorAll(arguments[0])]
                     .map(e => e.textContent.trim().slice(0, 120)),
  text: document.body.innerText,
  sidebar: links('nav.bd-docs-nav a[href]'),
  internal: links('article a.reference.internal[href], article a[href^="#"]'),
};
"""


def _check_link(href: str, base: str, cache: dict[str, str | None]) -> str | None:
    """``None`` if ``href`` (a URL on the local server) exists, with its #fragment; else why not."""
    if not href.startswith(base):
        return None  # external: not followed (the network is off)
    url, _, fragment = href.partition("#")
    if url not in cache:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                cache[url] = resp.read().decode("utf-8", "replace")
        except urllib.error.URLError as exc:
            cache[url] = None
            return f"{href}: {exc}"
    body = cache[url]
    if body is None:
        return f"{href}: does not resolve"
    if fragment:
        frag = urllib.parse.unquote(fragment)
        if not re.search(rf"""id=["']{re.escape(frag)}["']""", body):
            return f"{href}: no element with id {frag!r}"
    return None


@pytest.mark.parametrize("which", ["book", "smoke"])
def test_every_page_in_a_browser_without_network(which, browser, serve):
    html = _built_html(which)
    base = serve(html)
    shots = html.parent / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    pages = _pages(html)
    index = (html / "index.html").read_text()
    assert 'http-equiv="Refresh"' in index and "intro.html" in index, "index.html must redirect"
    assert "intro.html" in pages and any(p.startswith("generated/") for p in pages), pages
    problems: list[str] = []
    cache: dict[str, str | None] = {}
    browser.get_log("browser")
    browser.get_log("performance")
    for page in pages:
        browser.get(base + page)
        mathjax = browser.execute_async_script(_WAIT_FOR_MATHJAX)
        facts = browser.execute_script(_PAGE_FACTS, ERROR_SELECTORS)
        _screenshot(browser, shots / (page.replace("/", "__").removesuffix(".html") + ".png"))
        where = f"{which}:{page}"
        for entry in browser.get_log("browser"):
            if entry.get("level") == "SEVERE":
                problems.append(f"{where}: console error: {entry.get('message')}")
        for entry in browser.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                url = msg["params"]["request"]["url"]
                # chrome:// and the like are the browser's own pages, not the network
                external = url.startswith(("http:", "https:", "ws:", "wss:", "ftp:"))
                if external and not url.startswith(base):
                    problems.append(f"{where}: requested {url} (the book must work offline)")
            elif msg.get("method") == "Network.loadingFailed":
                problems.append(f"{where}: a request failed: {msg['params'].get('errorText')}")
        if facts["images"]:
            problems.append(f"{where}: images not loaded: {facts['images']}")
        if facts["n_math"]:
            if mathjax != "typeset":
                problems.append(f"{where}: has math but MathJax did not run ({mathjax})")
            if facts["untypeset"]:
                problems.append(f"{where}: formulas not typeset: {facts['untypeset'][:3]}")
        if facts["tex_errors"]:
            problems.append(f"{where}: TeX errors: {facts['tex_errors'][:3]}")
        if facts["error_outputs"]:
            problems.append(f"{where}: error or stderr output: {facts['error_outputs'][:3]}")
        if "Traceback (most recent call last)" in facts["text"]:
            problems.append(f"{where}: a traceback is shown")
        for leak in sorted(set(LEAKS.findall(facts["text"]))):
            line = next(ln for ln in facts["text"].splitlines() if leak in ln)
            problems.append(f"{where}: shows {leak!r}: {line.strip()[:160]}")
        if page != "search.html" and page != "genindex.html" and not facts["sidebar"]:
            problems.append(f"{where}: no sidebar links")
        for href in dict.fromkeys(facts["sidebar"] + facts["internal"]):
            bad = _check_link(href, base, cache)
            if bad:
                problems.append(f"{where}: link {bad}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
