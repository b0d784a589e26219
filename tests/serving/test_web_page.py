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
