"""The studio in a real browser: headless Chromium (Debian's `chromium`, driven by
Playwright through executable_path; .ci/run installs it). A participant completes a
real-vs-fake study including an attention check, the admin page shows the tally and
its interval, a photo is cartoonized with the published hayao weights and
downloaded, and a file that is not an image gets a message.

Screenshots go to $TRANSFIGURE_SCREENSHOTS when set (the README's come from
`TRANSFIGURE_SCREENSHOTS=docs/studio pytest tests/test_studio_browser.py`)."""
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from shared_data import PHOTOS, WEIGHTS, needs_weights
from studio_helpers import ADMIN, live_server, real_vs_fake_folders, trials_of
from transfigure.studio.app import StudioConfig, create_app
from transfigure.studio.studies import StudySettings, create_links, create_study, study_results


def _chromium() -> str:
    path = os.environ.get("TRANSFIGURE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the browser tests need Debian's chromium and the playwright package (.ci/run installs "
                        "both); CI must not skip them")
        pytest.skip("no chromium or playwright here: apt-get install chromium (the test suite installs playwright)")
    return path


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as p:
        # As root (containers, CI) Chromium's sandbox cannot start.
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("TRANSFIGURE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@needs_weights
def test_a_participant_an_admin_and_a_visitor_use_the_studio(browser, shots, tmp_path):
    data = tmp_path / "data"
    real, fakes = real_vs_fake_folders(tmp_path)
    study_id = create_study(data, "real_vs_fake", "horse2zebra: CycleGAN vs CUT",
                            StudySettings(questions=4, practice=1, attention=1, show_ms=400), real=real, fakes=fakes)
    token = create_links(data, study_id, 1)[0]
    trials = {t["id"]: t for t in trials_of(data, token)}
    config = StudioConfig(data=data, admin_token=ADMIN, models=["hayao"], weights={"hayao": str(WEIGHTS / "hayao")})
    with live_server(create_app(config)) as base:
        page = browser.new_page(viewport={"width": 1000, "height": 700}, accept_downloads=True)

        # A participant: intro, then every trial; the pair disappears after show_ms, then the question.
        page.goto(f"{base}/s/{token}")
        page.screenshot(path=shots / "participant-intro.png")
        page.click("#start")
        attention_seen = 0
        for n in range(len(trials)):
            if n == 1:  # the pair, while it is shown (for the README)
                page.wait_for_selector("#options img", state="visible", timeout=20_000)
                page.screenshot(path=shots / "participant-pair.png")
            page.wait_for_selector("#buttons button", state="visible", timeout=20_000)
            trial = trials[page.evaluate("() => trial.trial_id")]
            if n == 1:
                page.screenshot(path=shots / "participant-question.png")
            attention_seen += trial["kind"] == "attention"
            choice = trial["correct"] if trial["kind"] != "test" else n % 2
            page.click(f"#buttons button[data-choice='{choice}']")
            if n < len(trials) - 1:
                page.wait_for_function(f"() => trial && trial.trial_id !== {trial['id']}", timeout=20_000)
        page.wait_for_selector("#done", state="visible", timeout=20_000)
        assert attention_seen == 1

        # The admin: the tally and its interval.
        _, results = study_results(data, study_id)
        assert results.participants == 1 and not results.excluded
        page.goto(f"{base}/admin/login?token={ADMIN}")
        page.goto(f"{base}/admin/studies/{study_id}")
        table = page.inner_text("#results")
        assert set(results.methods) == {"cyclegan", "cut"}  # each method gets its share of the questions
        for method, p in results.methods.items():
            assert method in table and f"{100 * p.rate:.1f}% ({p.successes}/{p.n})" in table
            assert f"{100 * p.wilson[0]:.1f}% – {100 * p.wilson[1]:.1f}%" in table
        assert page.locator("#chart svg").count() == 1
        page.screenshot(path=shots / "admin-results.png", full_page=True)

        # A visitor: a photo cartoonized with the published hayao weights, shown and downloaded.
        visitor = browser.new_page(viewport={"width": 1100, "height": 700}, accept_downloads=True)
        visitor.goto(base)
        photo = sorted(PHOTOS.glob("*.jp*g"))[0]
        visitor.select_option("#model", "hayao")
        visitor.set_input_files("#file", str(photo))
        visitor.click("#go")
        visitor.wait_for_selector("#pair", state="visible", timeout=180_000)
        visitor.wait_for_function("() => document.getElementById('result-image').naturalWidth > 0")
        assert visitor.evaluate("() => document.getElementById('result-image').naturalWidth") == 450
        visitor.screenshot(path=shots / "try-a-model.png", full_page=True)
        with visitor.expect_download() as download:
            visitor.click("#download")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name.endswith("_hayao.png") and Image.open(saved).size[0] == 450

        # A file that is not an image: a message, no stack trace.
        notes = tmp_path / "notes.txt"
        notes.write_text("not a photo")
        visitor.set_input_files("#file", str(notes))
        visitor.click("#go")
        visitor.wait_for_selector("#error", state="visible")
        message = visitor.inner_text("#error")
        assert "notes.txt: not an image" in message and "Traceback" not in message
        assert visitor.locator("#pair").is_hidden()
