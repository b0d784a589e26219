"""The web page in a real headless Chromium (Debian's chromium + chromedriver): upload and
browse."""

from __future__ import annotations

from tests.serving.conftest import CLASSES, PER_CLASS, jpeg


def test_upload_a_photo_and_see_its_category_and_similar_items(live_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "my ring.jpg"
    photo.write_bytes(jpeg(11))
    browser.get(live_server.url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#browse .card")) > 0)
    assert browser.find_element(By.ID, "browse-total").text == f"{PER_CLASS} items"

    browser.find_element(By.ID, "file").send_keys(str(photo))
    heading = wait.until(ec.visibility_of_element_located((By.ID, "predicted-category")))
    assert any(name in heading.text for name in CLASSES)
    cards = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card") or False)
    assert len(cards) == 10
    # Thumbnails load after the cards appear: wait (bounded) until every image has settled, then
    # check none broke.
    wait.until(
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('#results img')].every(i => i.complete)"
        )
    )
    loaded = browser.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)"
    )
    assert loaded, "every thumbnail in the results grid loads"


def test_a_bad_file_shows_the_services_error(live_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"not a photo at all")
    browser.get(live_server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    status = WebDriverWait(browser, 30).until(
        lambda d: (
            d.find_element(By.ID, "status")
            if "refused" in d.find_element(By.ID, "status").text
            else False
        )
    )
    assert "not_an_image" in status.text


def test_an_unsure_answer_and_no_close_match_are_said_on_the_page_and_in_the_api(browser, tmp_path):
    """A live service whose bundle's policy doubts every answer (confidence below 1.0) and finds
    nothing close (similarity below 1.0): the API says both and forces no items on the photo; the
    page shows both notices. The default policy (the other live service) says neither."""
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from jewelry_pipeline.core.answers import AnswerPolicy
    from jewelry_testing.servers import start_bentoml
    from tests.serving.conftest import make_bundle

    bundle = make_bundle(tmp_path / "bundle", answers=AnswerPolicy(1.0, 1.0))
    server = start_bentoml(bundle, tmp_path / "serve.log", {"JEWELRY_WORKERS": "1"})
    try:
        answer = httpx.post(
            server.url + "/recommend", files={"image": ("p.jpg", jpeg(4), "image/jpeg")}, timeout=30
        ).json()
        assert answer["category_uncertain"] is True and answer["close_match"] is False
        assert answer["items"] == [] and answer["category"] in CLASSES
        photo = tmp_path / "odd.jpg"
        photo.write_bytes(jpeg(4))
        browser.get(server.url + "/")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        wait = WebDriverWait(browser, 30)
        heading = wait.until(ec.visibility_of_element_located((By.ID, "predicted-category")))
        assert heading.text.startswith("Not sure of the category")
        assert "No close match" in browser.find_element(By.ID, "no-close-match").text
        assert browser.find_elements(By.CSS_SELECTOR, "#results .card") == []
    finally:
        server.stop()
