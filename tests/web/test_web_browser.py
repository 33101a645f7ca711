"""Browser tests (issue 7, Verification): Playwright (Python) driving Debian's Chromium.

Flow: log in, upload the case zip, run planning (the worker process runs the REAL chain:
[A1] load_case_folder → [D] plan_case → [E] write_reports, as a "quick preview" without the
physics simulations and without the PDF: those take minutes on 2 cores), see the
report and the viewer canvas (niivue loads the volumes: ``data-loaded="1"``), record a
decision, log out; then a member of another board cannot open the case (404, nothing leaks).
The server listens on 127.0.0.1 only. Skips when /usr/bin/chromium is absent, unless CI=true.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from webtest_helpers import PASSWORDS, LiveServer, make_settings, seed_users

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-quic", "--no-first-run", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        msg = "Debian's Chromium (/usr/bin/chromium) is not installed: run .ci/services.sh."
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def live(tmp_path, monkeypatch):
    from latplan.web.app import create_app

    monkeypatch.setenv("LATPLAN_REPORT_PDF", "0")
    settings = make_settings(f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "data", start_worker=True,
                             planner="latplan.web.jobs:default_planner")
    seed_users(settings)
    with LiveServer(create_app(settings)) as srv:
        yield srv


def _login(page, url, user):
    page.goto(url + "/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    page.click("#login-submit")
    page.wait_for_url(url + "/cases")


def test_web_browser_board_flow(browser, live, tmp_path, case_zip):
    """Log in → upload → plan → report + viewer canvas → decision → log out; outsider gets 404."""
    zip_path = tmp_path / "WEB-01.zip"
    zip_path.write_bytes(case_zip)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _login(page, live.url, "coord")
    page.set_input_files("#upload", str(zip_path))
    page.fill("#title", "browser test")
    page.click("#upload-submit")
    page.wait_for_url(f"{live.url}/cases/*")
    case_url = page.url
    assert "WEB-01" in page.inner_text("h1")
    page.check("#plan-quick")  # rules-only preview: the simulations of [B]/[C] take minutes on 2 cores
    page.click("#plan-button")
    page.wait_for_function(  # htmx polls the job; HX-Refresh reloads the page when it ends
        "() => { const s = document.getElementById('job-status');"
        " return s && (s.textContent === 'done' || s.textContent === 'failed'); }", timeout=240_000)
    status = page.inner_text("#job-status")
    assert status == "done", page.inner_text("#job")
    page.wait_for_selector("#viewer-canvas", timeout=30_000)
    canvas = page.locator("#viewer-canvas")
    assert canvas.is_visible()
    page.wait_for_function(
        "() => { const c = document.getElementById('viewer-canvas'); return c.dataset.loaded === '1' || c.dataset.error; }",
        timeout=60_000,
    )
    assert canvas.get_attribute("data-error") is None, canvas.get_attribute("data-error")
    assert int(canvas.get_attribute("data-layers")) >= 3  # image, liver, lesions (no zones in a preview)
    box = canvas.bounding_box()
    assert box["width"] > 300 and box["height"] > 200
    frame = page.frame_locator("#report-frame")
    assert "WEB-01" in frame.locator("body").inner_text(timeout=30_000)
    assert page.locator("#strategies tbody tr").count() >= 1
    assert page.locator("#options h3").count() == 1  # one lesion, its option grid

    page.click("#logout")
    page.wait_for_url(f"{live.url}/login")
    _login(page, live.url, "doc")
    page.goto(case_url)
    page.select_option("#decision-scope", "lesion_1")
    top = page.locator('#decision-chosen optgroup[label="lesion_1"] option', has_text="(top-ranked)").first
    chosen = top.get_attribute("value")
    page.select_option("#decision-chosen", chosen)
    page.fill("#decision-rationale", "peripheral lesion, ablation first")
    page.fill("#decision-attendees", "Dr Doc — interventional radiology\nDr Onc — medical oncology")
    page.fill("#decision-preference", "wants the least invasive option")
    page.click("#decision-submit")
    page.wait_for_selector("#decision-table")
    table = page.inner_text("#decision-table")
    assert chosen in table and "medical oncology" in table and "least invasive" in table
    page.click("#logout")
    page.wait_for_url(f"{live.url}/login")
    page.goto(case_url)
    assert page.url == f"{live.url}/login"  # the session is gone

    _login(page, live.url, "outsider")
    resp = page.goto(case_url)
    assert resp.status == 404
    body = page.content()
    assert "WEB-01" not in body and "browser test" not in body
    for suffix in ("/report", "/viewer/index.json", "/export.json"):
        assert page.goto(case_url + suffix).status == 404
    assert not errors, errors
