"""Headless Chromium for end-to-end tests: Debian's `chromium` package driven by Playwright for Python
through executable_path (scripts/install-browser.sh installs it). Import the fixture into a test module:

    import browser
    browser_page = browser.browser_page  # the fixture, used by name
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = (
    os.environ.get("WXPARTNER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A fresh page (1280x900) in a fresh headless browser; skips when chromium or playwright is missing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM:
        pytest.skip("no chromium here: scripts/install-browser.sh installs Debian's package")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(10_000)
        try:
            yield page
        finally:
            browser.close()


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Full-page PNG in the test's tmp dir, or in $WXPARTNER_E2E_ARTIFACTS when set (CI artifacts)."""
    out_dir = Path(os.environ.get("WXPARTNER_E2E_ARTIFACTS") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless browser for a whole test module (a browser takes ~1 s to start, a context ~10 ms):
    give each test its own context with ``fresh_page``. Skips like ``browser_page``."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM:
        pytest.skip("no chromium here: scripts/install-browser.sh installs Debian's package")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_page(browser: Any, *, width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A page in a new browser context (own cookies), closed afterwards."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
