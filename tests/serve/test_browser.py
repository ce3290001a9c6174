"""The page in a real browser: Debian's headless Chromium driven by Playwright opens the page served
on loopback, uploads a real CT slice and a real chest X-ray, and sees the modality, the verdict and
the overlay images; screenshots are kept under the pytest temporary folder.

Needs ``chromium`` (``make test`` installs it with apt-get where it can) and the playwright package;
skips, saying which is missing, where either cannot be had.
"""

from __future__ import annotations

import shutil

import pytest

from tests.serve.conftest import CT_DICOM, CXR_JPEG

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if not shutil.which(CHROMIUM):
        pytest.skip("no chromium browser: install Debian's package with 'apt-get install -y chromium' (needs root)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def _screen(page, path, modality: str) -> None:
    page.set_input_files("#file-input", str(path))
    page.select_option("#modality", modality)
    page.click("#submit")
    page.wait_for_selector("#status:has-text('Done')", timeout=60_000)  # the page's CSP forbids eval'd waits
    assert page.is_visible("#results")


def _image_shown(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0 && img.alt.length > 20")


def test_a_clinician_screens_a_ct_slice_and_a_chest_xray(browser, live_server, all_models, data_root, tmp_path_factory):
    server = live_server(all_models)
    artefacts = tmp_path_factory.mktemp("browser-screenshots")
    page = browser.new_page(viewport={"width": 1100, "height": 1600})
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server.url + "/")

    assert "not a diagnosis" in page.inner_text(".caution")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file-input"
    assert page.is_visible("#lesion-field")  # the server has a lesion model

    ct = data_root / CT_DICOM
    _screen(page, ct, "")  # "recognise from the file": the DICOM says CT
    assert page.evaluate("document.activeElement.id") == "results"  # focus moves to the result
    assert "Recognised as CT, from the DICOM Modality tag (CT)" in page.inner_text("#result-modality")
    decision = page.inner_text("#result-decision")
    assert decision.startswith(("COVID", "NonCOVID")) and "P(COVID)" in decision
    assert _image_shown(page, "#heat-image")
    assert page.is_visible("#lesion-results") and _image_shown(page, "#lesion-overlays img")
    assert "mm²" in page.inner_text("#lung-amount")
    assert page.get_attribute("#heat-download", "href").startswith("data:image/png;base64,")
    assert page.get_attribute("#json-download", "href").startswith("blob:")
    page.screenshot(path=str(artefacts / "ct-slice.png"), full_page=True)

    cxr = data_root / CXR_JPEG
    _screen(page, cxr, "cxr")  # a JPEG says nothing; the user also chooses chest X-ray
    assert "The modality check finds a chest X-ray" in page.inner_text("#result-modality")
    assert "as the request said" in page.inner_text("#result-modality")
    assert page.inner_text("#result-decision").startswith(("COVID", "Normal"))
    assert _image_shown(page, "#heat-image")
    assert page.is_hidden("#lesion-results")  # lesions are measured on CT only
    page.screenshot(path=str(artefacts / "chest-xray.png"), full_page=True)

    page.set_input_files("#file-input", str(data_root / "README.md"))
    page.select_option("#modality", "ct")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "not an image covidlens can read" in page.inner_text("#error")

    assert all(url.startswith((server.url, "data:", "blob:")) for url in requested), requested
    print(f"browser screenshots: {artefacts}")
    assert (artefacts / "ct-slice.png").stat().st_size > 10_000
