"""The page in a real browser: Debian's headless Chromium driven by Playwright opens the page served
on loopback, drops a real DICOM series and a real CT slice on it and sees the study verdict, its key
slices and the slice strip; then asks one model at a time for a CT slice and a chest X-ray and sees
the modality, the decision and the overlay images. Screenshots are kept under the pytest temporary folder.

Needs ``chromium`` (``make test`` installs it with apt-get where it can) and the playwright package;
skips, saying which is missing, where either cannot be had.
"""

from __future__ import annotations

import shutil

import pytest

from tests.serve.conftest import CT_DICOM, CXR_JPEG, series_slices

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


def _one_model(page, path, modality: str) -> None:
    page.set_input_files("#file-input", str(path))
    page.select_option("#modality", modality)
    page.click("#detail-submit")
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
    page.click("#detail-options summary")
    assert page.is_visible("#lesion-field")  # the server has a lesion model

    ct = data_root / CT_DICOM
    _one_model(page, ct, "")  # "recognise from the file": the DICOM says CT
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
    _one_model(page, cxr, "cxr")  # a JPEG says nothing; the user also chooses chest X-ray
    assert "The modality check finds a chest X-ray" in page.inner_text("#result-modality")
    assert "as the request said" in page.inner_text("#result-modality")
    assert page.inner_text("#result-decision").startswith(("COVID", "Normal"))
    assert _image_shown(page, "#heat-image")
    assert page.is_hidden("#lesion-results")  # lesions are measured on CT only
    page.screenshot(path=str(artefacts / "chest-xray.png"), full_page=True)

    page.set_input_files("#file-input", str(data_root / "README.md"))
    page.select_option("#modality", "ct")
    page.click("#detail-submit")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "not an image covidlens can read" in page.inner_text("#error")

    assert all(url.startswith((server.url, "data:", "blob:")) for url in requested), requested
    print(f"browser screenshots: {artefacts}")
    assert (artefacts / "ct-slice.png").stat().st_size > 10_000


def _drop(page, paths) -> None:
    """Drop ``paths`` on the drop zone as a user drags files from a folder (a DataTransfer of Files)."""
    import base64

    files = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode("ascii")} for p in paths]
    transfer = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: "application/dicom" }));
            }
            return transfer;
        }""", files)
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def test_a_dropped_study_is_screened_and_its_verdict_and_key_slices_shown(browser, live_server, screen_models,
                                                                          data_root, tmp_path_factory):
    server = live_server(screen_models)
    artefacts = tmp_path_factory.mktemp("browser-screen")
    page = browser.new_page(viewport={"width": 1100, "height": 1600})
    page.goto(server.url + "/")
    page.wait_for_selector("#lesion-field:not([hidden])", state="attached")  # the model list has arrived

    _drop(page, series_slices(data_root, slice(20, 24)))  # dropping screens at once: no button to press
    page.wait_for_selector("#status:has-text('Done'), #error:not([hidden])", timeout=60_000)
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert page.is_visible("#study") and page.is_hidden("#results")
    assert page.evaluate("document.activeElement.id") == "study"
    assert page.inner_text("#study-decision").startswith(("pneumonia-pattern lesions", "no pneumonia-pattern lesions"))
    assert page.inner_text("#study-severity").startswith("CT-")
    assert page.inner_text("#study-modality") == "CT, from the DICOM Modality tag (CT)."
    assert "mL lie inside the lungs" in page.inner_text("#study-rule")
    assert _image_shown(page, "#key-slices img") and page.locator("#key-slices img").count() >= 2  # lesions and heat
    assert page.is_visible("#slice-strip") and page.locator("#strip-chart rect").count() >= 4
    assert "4 slices" in page.inner_text("#strip-caption")
    assert page.get_attribute("#study-json-download", "href").startswith("blob:")
    page.screenshot(path=str(artefacts / "series.png"), full_page=True)

    _drop(page, [data_root / CT_DICOM])  # one slice: a verdict and one key slice, no strip
    page.wait_for_selector("#study-rule:has-text(\"of the slice's lung is lesion\")", timeout=60_000)
    assert page.locator("#key-slices img").count() == 2 and page.is_hidden("#slice-strip")
    page.screenshot(path=str(artefacts / "slice.png"), full_page=True)
    page.close()


def test_the_study_view_links_the_card_of_each_store_model_used(browser, live_server, checkpoints, data_root,
                                                                tmp_path, monkeypatch):
    from covidlens.serve.pipeline import ServedModels
    from covidlens.store import model_dir, write_card

    monkeypatch.setenv("COVIDLENS_HOME", str(tmp_path / "home"))
    for role, name in (("lesion", "ct-lesions"), ("ct", "ct-classifier")):
        shutil.copytree(checkpoints[role], model_dir(name))
        write_card(model_dir(name), {"name": name, "summary": f"the tiny {name} test model"})
    server = live_server(ServedModels.load(ct=model_dir("ct-classifier"), lesion=model_dir("ct-lesions")))
    page = browser.new_page(viewport={"width": 1100, "height": 1600})
    page.goto(server.url + "/")
    page.wait_for_selector("#lesion-field:not([hidden])", state="attached")
    _drop(page, [data_root / CT_DICOM])
    page.wait_for_selector("#status:has-text('Done'), #error:not([hidden])", timeout=60_000)
    assert page.is_hidden("#error"), page.inner_text("#error")
    links = page.locator("#study-models a.model-card")
    assert links.count() == 2
    assert [links.nth(i).get_attribute("href") for i in range(2)] == ["/v1/models/ct-lesions/card",
                                                                      "/v1/models/ct-classifier/card"]
    with page.context.expect_page() as opened:
        links.nth(0).click()
    card = opened.value
    card.wait_for_load_state()
    assert card.inner_text("body").startswith("# ct-lesions")
    page.close()
