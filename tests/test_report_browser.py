"""`bench report` in a real browser: Debian's Chromium, headless, driven by Playwright for Python.

The browser is the system one (``apt-get install chromium``), never one that ``playwright install`` downloads. The
report is opened from a ``file://`` URL with every request and console message recorded: it must make no request
other than ``file:`` or ``data:``, log no console error, show its key sections, decode every image, and paint more
than 1% of the screenshot in something other than the background colour. A control page with an outside image
checks that the Content-Security-Policy really blocks it. When the browser or Playwright is missing the test skips,
except under CI (the environment variable ``CI`` set), where it fails.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

from test_report import COMPARE_MD, fake_compare, make_run, small_run

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
SECTIONS = ("runs", "metrics", "pope", "grounded", "chair", "saliency", "bias", "figures", "compare")


def _need_browser():
    """Playwright's sync API, or a skip (a failure under CI) naming what is missing."""
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        missing.append("playwright for Python (pip install -e '.[test]')")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install them (.ci/run)")
        pytest.skip(message)
    return sync_playwright


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    from bench.results.report import write_report

    root = tmp_path_factory.mktemp("runs")
    runs = [make_run(root, "model-a", chair_captions=21), small_run(root, "model-b")]
    with pytest.MonkeyPatch.context() as patch:
        fake_compare(patch, COMPARE_MD)
        out, _, _ = write_report(runs, tmp_path_factory.mktemp("report") / "report.html", warn=lambda m: None)
    return out


def _open(sync_playwright, path: Path, tmp_path: Path, screenshot: bool = True):
    """Load ``path`` in a fresh headless Chromium; (requests, console errors, page facts, screenshot PNG). Requests
    that failed carry their reason: ``url (failed: reason)``; every response is listed as ``url (status)``."""
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    requests, errors, outcomes = [], [], []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM), headless=True,
                                                       args=ARGS, viewport={"width": 1280, "height": 1600})
        try:
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: outcomes.append(f"{r.url} (failed: {r.failure})"))
            page.on("response", lambda r: outcomes.append(f"{r.url} ({r.status})"))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_timeout(300)                       # let late console messages (CSP reports) arrive
            facts = page.evaluate("""() => ({
                ids: Array.from(document.querySelectorAll('section[id]')).map(s => s.id),
                headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
                images: document.images.length,
                broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length,
                background: getComputedStyle(document.body).backgroundColor,
            })""")
            shot = page.screenshot() if screenshot else b""
        finally:
            context.close()
    facts["outcomes"] = outcomes
    return requests, errors, facts, shot


def test_the_report_renders_offline_in_chromium(report_file, tmp_path):
    from PIL import Image

    sync_playwright = _need_browser()
    requests, errors, facts, shot = _open(sync_playwright, report_file, tmp_path)
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests
    assert not any("failed" in o for o in facts["outcomes"]), facts["outcomes"]
    assert errors == []
    for ident in SECTIONS:
        assert ident in facts["ids"], ident
    assert {"Metrics", "POPE", "CHAIR captions", "Saliency", "Compare"} <= set(facts["headings"])
    assert facts["images"] > 30 and facts["broken"] == 0               # every data: image decodes under the CSP
    background = np.array([int(x) for x in re.findall(r"\d+", facts["background"])[:3]])
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=int)
    differ = (np.abs(pixels - background).max(axis=2) > 8).mean()
    assert differ > 0.01, f"only {differ:.2%} of the screenshot differs from the background {facts['background']}"


def test_the_policy_blocks_an_outside_load(report_file, tmp_path):
    """The control: the same page with an image from outside. Chromium must refuse it before the network: the request
    fails with reason ``csp``, no response comes, and the console names the Content Security Policy."""
    sync_playwright = _need_browser()
    control = tmp_path / "control.html"
    text = report_file.read_text(encoding="utf-8")
    control.write_text(text.replace("<body>", '<body><img src="http://127.0.0.1:9/outside.png" alt="x">', 1),
                       encoding="utf-8")
    requests, errors, facts, _ = _open(sync_playwright, control, tmp_path, screenshot=False)
    outside = "http://127.0.0.1:9/outside.png"
    assert outside in requests and f"{outside} (failed: csp)" in facts["outcomes"]
    assert not any(o.startswith(outside) and "failed" not in o for o in facts["outcomes"])
    assert any("Content Security Policy" in e and outside in e for e in errors), errors
    assert facts["broken"] == 1


def test_the_browser_test_fails_under_ci_when_the_browser_is_missing(monkeypatch):
    monkeypatch.setattr(f"{__name__}.CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="the browser test needs /nonexistent/chromium"):
        _need_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        _need_browser()
