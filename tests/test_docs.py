"""The documentation site: it builds strictly, its reference covers the public API, every code
block in the guides and the README runs, and a rendered page shows in a real browser."""

from __future__ import annotations

import functools
import html as html_lib
import http.server
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from docs_pages import DOCS, ROOT, blocks, check_outputs, run
from test_project import PUBLIC

GUIDES = sorted((DOCS / "guides").glob("*.md"))
PAGES = [DOCS / "index.md", *GUIDES]
REFERENCE = DOCS / "reference"
REFERENCED = sorted({module.__name__ for module in PUBLIC} | {"weightwise.ops"})
GUIDE_NAMES = {
    "coming-from-keras", "regularizing-pytorch", "constraints", "scaling-out", "performance", "saving-and-safety",
}


def test_the_guides_are_the_ones_promised() -> None:
    assert {page.stem for page in GUIDES} == GUIDE_NAMES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_runs_top_to_bottom(page: Path, tmp_path: Path) -> None:
    """Every block of the page runs, in order, in one fresh interpreter (see ``docs_pages``), and
    prints exactly the output the page shows under it."""
    assert any(block.kind in {"python", "bash"} for block in blocks(page)) or page.name == "index.md"
    result = run(page, tmp_path)
    assert result.returncode == 0, f"{page.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert check_outputs(page, result.stdout) == []


def test_readme_examples_run(tmp_path: Path) -> None:
    """The README's Python examples run as one script; its two set-up commands are what CI runs."""
    readme = ROOT / "README.md"
    assert sum(block.kind == "python" for block in blocks(readme)) >= 2
    result = run(readme, tmp_path, run_bash=False)
    assert result.returncode == 0, f"README failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert check_outputs(readme, result.stdout) == []


def test_readme_points_into_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in GUIDES:
        assert f"docs/guides/{page.name}" in readme, f"README does not link {page.name}"
    assert "docs/reference/index.md" in readme


def test_reference_has_one_page_per_public_module_and_nav_lists_every_page() -> None:
    pages = {page.stem: page.read_text() for page in REFERENCE.glob("weightwise*.md")}
    assert sorted(pages) == REFERENCED
    for name, text in pages.items():
        assert text.splitlines()[0] == f"::: {name}", name
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        assert f": {page.relative_to(DOCS).as_posix()}\n" in nav, f"{page} is not in the nav"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built with ``mkdocs build --strict``: a warning (a broken link, a reference that
    does not resolve, a docstring the parser cannot read) fails the build."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-6000:]
    return out


@pytest.fixture(scope="module")
def anchors(site: Path) -> dict[str, set[str]]:
    """Each reference page's anchors (its ``id``s), by module name."""
    return {name: set(re.findall(r'id="([^"]+)"', (site / "reference" / name / "index.html").read_text()))
            for name in REFERENCED}


def test_reference_renders_every_public_name_and_nothing_private(anchors: dict[str, set[str]]) -> None:
    missing, private = [], []
    for name in REFERENCED:
        ids = anchors[name]
        module = importlib.import_module(name)
        # A submodule has a page of its own rather than an entry on its parent's.
        missing += [f"{name}.{member}" for member in module.__all__
                    if f"{name}.{member}" not in ids and f"{name}.{member}" not in REFERENCED]
        private += [i for i in ids if i.startswith("weightwise") and re.search(r"\._[a-z]", i)]
    assert missing == []
    assert private == []


def test_reference_renders_the_public_members_each_class_defines(anchors: dict[str, set[str]]) -> None:
    """Every public method and property a public class adds has an entry; an override of a base
    class's member (``call``, ``get_config``) is documented once, on the base."""
    missing = []
    for name in REFERENCED:
        ids = anchors[name]
        module = importlib.import_module(name)
        for member in module.__all__:
            cls = getattr(module, member)
            if not inspect.isclass(cls) or not cls.__module__.startswith("weightwise.") or cls.__name__ != member:
                continue
            for attribute, value in vars(cls).items():
                if attribute.startswith("_") or not isinstance(value, property | classmethod | staticmethod) \
                        and not inspect.isfunction(value):
                    continue
                if any(attribute in vars(base) for base in cls.__mro__[1:]):
                    continue
                if f"{name}.{member}.{attribute}" not in ids:
                    missing.append(f"{name}.{member}.{attribute}")
    assert missing == []


def test_guides_render_their_headings(site: Path) -> None:
    for page in GUIDES:
        html = (site / "guides" / page.stem / "index.html").read_text()
        shown = {html_lib.unescape(re.sub(r"<[^>]+>", "", h)).replace("¶", "").strip()
                 for h in re.findall(r"<h[1-3][^>]*>(.*?)</h[1-3]>", html, flags=re.DOTALL)}
        prose = re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.DOTALL | re.MULTILINE)
        for heading in re.findall(r"^#{1,3} (.+)$", prose, flags=re.MULTILINE):
            assert heading.replace("`", "") in shown, (page.name, heading, sorted(shown))


# -- the site in a real browser -------------------------------------------------------------------

def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("CI renders the docs in headless Chromium; install it (the README's test command does).")
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _render(url: str, tmp_path: Path) -> tuple[str, np.ndarray]:
    """The page's DOM after its scripts ran, and a 1280×1600 screenshot, from headless Chromium."""
    chromium = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600", "--hide-scrollbars"]
    shot = tmp_path / "page.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    import matplotlib.image

    return dom, matplotlib.image.imread(shot)


@pytest.mark.parametrize(("path", "headings"), [
    ("reference/weightwise.regularizers/", ["weightwise.regularizers", "L1L2", "OrthogonalRegularizer"]),
    ("guides/coming-from-keras/", ["Coming from Keras"]),
])
def test_page_renders_in_headless_chromium(served: str, tmp_path: Path, path: str, headings: list[str]) -> None:
    dom, image = _render(f"{served}/{path}", tmp_path)
    found = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<h[1-3][^>]*>(.*?)</h[1-3]>", dom, flags=re.DOTALL)]
    for heading in headings:
        assert any(heading in text for text in found), (heading, found[:20])
    text = re.sub(r"<[^>]+>", " ", dom)
    # No missing page, no directive left unrendered, no reference that failed to resolve.
    for error in ["404 - Not found", "::: weightwise", "Could not find", "autorefs-"]:
        assert error not in text
    # The theme's stylesheet loaded: the header bar is the Material indigo, not an unstyled page.
    assert image.shape[:2] == (1600, 1280)
    header = image[10, 640, :3]
    assert np.allclose(header, [0x3F / 255, 0x51 / 255, 0xB5 / 255], atol=0.05), header
    assert image[:, :, :3].std() > 0.05
