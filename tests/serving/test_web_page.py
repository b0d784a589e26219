"""The web page in a real headless Chromium (Debian's chromium + chromedriver): upload and
browse."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

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
    assert browser.find_element(By.ID, "browse-total").text == f"1-{PER_CLASS} of {PER_CLASS} items"

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
    page says "Not in our catalog" and claims no category. The default policy (the other live
    service) says neither."""
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from jewelry_pipeline.core.answers import AnswerPolicy
    from jewelry_testing.servers import start_bentoml
    from tests.serving.conftest import make_bundle

    photo = tmp_path / "odd.jpg"
    photo.write_bytes(jpeg(4))
    for name, policy in (("far", AnswerPolicy(1.0, 1.0)), ("unsure", AnswerPolicy(1.0, -1.0))):
        bundle = make_bundle(tmp_path / name / "bundle", answers=policy)
        server = start_bentoml(bundle, tmp_path / f"{name}.log", {"JEWELRY_WORKERS": "1"})
        try:
            answer = httpx.post(
                server.url + "/recommend",
                files={"image": ("p.jpg", jpeg(4), "image/jpeg")},
                timeout=30,
            ).json()
            assert answer["category_uncertain"] is True and answer["category"] in CLASSES
            assert answer["close_match"] is (name == "unsure")
            assert (answer["items"] == []) is (name == "far")  # no items forced on a far photo
            browser.get(server.url + "/")
            browser.find_element(By.ID, "file").send_keys(str(photo))
            wait = WebDriverWait(browser, 30)
            heading = wait.until(ec.visibility_of_element_located((By.ID, "predicted-category")))
            cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
            if name == "far":
                assert heading.text == "Not in our catalog"  # no category claimed for it
                notice = browser.find_element(By.ID, "no-close-match").text
                assert "Nothing in the catalog looks like this photo" in notice
                assert (
                    cards == []
                    and browser.find_elements(By.CSS_SELECTOR, "#prediction .prob") == []
                )
            else:
                assert heading.text.startswith("Not sure of the category")
                assert browser.find_elements(By.ID, "no-close-match") == []
                wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#results .card"))
        finally:
            server.stop()


@pytest.mark.parametrize(("width", "height", "name"), [(1280, 900, "desktop"), (390, 844, "phone")])
def test_the_page_works_at_desktop_and_phone_width(
    live_server, browser, tmp_path, width, height, name
):
    """At 1280 and 390 px: the catalog's title, no horizontal scroll, every picture loads, k result
    cards with file names and a readable similarity, tap targets of at least 40 px, "More like this"
    finds items, browsing pages. With JEWELRY_SCREENSHOTS set, the screenshots go to that folder
    (`make screenshots` writes docs/screenshots/)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "query.jpg"
    photo.write_bytes(jpeg(7))
    browser.set_window_size(width, height)
    browser.get(live_server.url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#browse .card")) > 0)
    assert browser.find_element(By.ID, "title").text == "Catalog"  # the tiny bundle's own title
    assert browser.title.startswith("Catalog")
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys(
        "6\t"
    )  # committed (its change event) before the upload
    browser.find_element(By.ID, "file").send_keys(str(photo))
    cards = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card") or False)
    assert len(cards) == 6
    first = cards[0].text
    assert ".jpg" in first and "% similar" in first, first  # file name and readable similarity
    view = cards[0].find_element(By.CSS_SELECTOR, "a.view")
    item_id = cards[0].get_attribute("data-item-id")
    assert view.get_attribute("href") == f"{live_server.url}/items/{item_id}/thumbnail"
    assert view.get_attribute("target") == "_blank" and "noopener" in view.get_attribute("rel")
    images_loaded = (
        "return [...document.images].filter(i => i.id !== 'preview')"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    wait.until(lambda d: d.execute_script(images_loaded))
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"horizontal scroll of {overflow} px at {width} px"
    small = browser.execute_script(
        "return [...document.querySelectorAll('button, select, input')]"
        ".filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 40)"
        ".map(e => e.id || e.textContent)"
    )
    assert small == [], f"tap targets under 40 px: {small}"
    shown = browser.execute_script(
        "return Math.min(...[...document.querySelectorAll('#results img')]"
        ".map(i => i.getBoundingClientRect().width))"
    )
    assert shown >= 128, f"thumbnails shown at {shown} px"
    if folder := os.environ.get("JEWELRY_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"page-{name}.png"))
    cards[0].find_element(By.CSS_SELECTOR, "button.more").click()
    wait.until(lambda d: d.find_element(By.ID, "results-heading").text.startswith("Items like"))
    similar = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert len(similar) == 6
    assert browser.find_element(By.ID, "browse-previous").get_attribute("disabled") is not None


def test_the_sub_style_view_shows_strips_previews_another_k_and_charts_the_criterion(
    live_server, browser
):
    """The first category's sub-styles as served (one strip each, typical items first), a preview
    of 3 chosen from the list (not saved: "as served" shows the served ones again), and the chart
    of the criterion with the run's k marked (drawn from a criterion handed to the page's own
    function: the tiny bundle stores none, so the chart is hidden until then)."""
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.set_window_size(1280, 900)
    browser.get(live_server.url + "/")
    wait = WebDriverWait(browser, 30)
    strips = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#substyles .substyle") or False)
    served = httpx.get(f"{live_server.url}/substyles", params={"category": CLASSES[0]}).json()
    assert len(strips) == served["k"]
    assert (
        strips[0]
        .find_element(By.TAG_NAME, "h3")
        .text.endswith(f"· {served['substyles'][0]['count']} items")
    )
    typical = strips[0].find_elements(By.CSS_SELECTOR, ".strip:not(.edge) .card")
    assert [c.get_attribute("data-item-id") for c in typical] == [
        i["item_id"] for i in served["substyles"][0]["typical"]
    ]
    assert not browser.find_element(By.ID, "substyle-chart").is_displayed()
    assert not browser.find_element(By.ID, "admin").is_displayed()  # editing is off here
    assert not browser.find_elements(By.CSS_SELECTOR, "#substyles .edit")

    Select(browser.find_element(By.ID, "substyle-k")).select_by_value("3")
    wait.until(lambda d: d.find_element(By.ID, "substyle-note").text.startswith("Preview: 3"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#substyles .substyle")) == 3
    Select(browser.find_element(By.ID, "substyle-k")).select_by_value("")
    wait.until(lambda d: "as the catalog shows" in d.find_element(By.ID, "substyle-note").text)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#substyles .substyle")) == served["k"]

    browser.execute_script(
        "drawCriterion({k: 3, silhouette_by_k: {'2': 0.1, '3': 0.4, '4': 0.2}}, 4)"
    )
    chart = browser.find_element(By.ID, "substyle-chart")
    assert chart.is_displayed() and "chose k=3" in chart.text
    bars = chart.find_elements(By.CSS_SELECTOR, ".bar")
    assert [b.get_attribute("data-k") for b in bars] == ["2", "3", "4"]
    assert [b.get_attribute("class") for b in bars] == ["bar", "bar chosen", "bar previewed"]
    heights = [b.find_element(By.TAG_NAME, "span").size["height"] for b in bars]
    assert heights[1] > heights[2] > heights[0]  # the tallest bar is the best k
    assert "silhouette" in chart.text
    browser.execute_script(  # chosen by agreement: that criterion is charted, not the silhouette
        "drawCriterion({k: 4, silhouette_by_k: {'2': 0.9, '3': 0.1, '4': 0.1},"
        " agreement_by_k: {'2': 0.1, '3': 0.2, '4': 0.6}}, null)"
    )
    assert "agree" in chart.text and "chose k=4" in chart.text
    bars = chart.find_elements(By.CSS_SELECTOR, ".bar")
    heights = [b.find_element(By.TAG_NAME, "span").size["height"] for b in bars]
    assert heights[2] > heights[1] > heights[0]


def _sizes(browser) -> dict[str, int]:
    """The sub-styles shown: cluster id -> item count (from each strip's heading)."""
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#substyles .substyle')]"
        ".map(b => [b.dataset.cluster, b.querySelector('h3').textContent])"
    )
    return {cluster: int(re.search(r"· (\d+) items", text).group(1)) for cluster, text in rows}


def test_staff_edit_sub_styles_on_the_page_at_desktop_and_phone_width(browser, tmp_path):
    """With an admin token typed in, rename, merge, split, move an item and keep a previewed k:
    each is saved as a new version, served by live reload and shown; with a wrong token the page
    says why and nothing changes. At phone width the edit controls fit. With JEWELRY_SCREENSHOTS
    set, the edited view goes to that folder at both widths."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from jewelry_pipeline.serving.admin import new_token, token_digest
    from jewelry_testing.servers import start_bentoml
    from tests.serving.conftest import edit_recorder, make_bundle

    token = new_token()
    server = start_bentoml(
        make_bundle(tmp_path / "bundle"),
        tmp_path / "serve.log",
        {
            "MLFLOW_TRACKING_URI": edit_recorder(tmp_path).tracking_uri,
            "JEWELRY_RELOAD_SECONDS": "1",
            "JEWELRY_WORKERS": "1",
            "JEWELRY_ADMIN_TOKENS": f"shop-lead={token_digest(token)}",
        },
    )
    try:
        browser.set_window_size(1280, 900)
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        headings = "return [...document.querySelectorAll('#substyles h3')].map(h => h.textContent)"
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#substyles .edit"))
        assert browser.find_element(By.ID, "admin").is_displayed()
        assert len(browser.execute_script(headings)) == 2  # the tiny bundle: 2 per category

        first = browser.find_elements(By.CSS_SELECTOR, "#substyles .substyle")[0]
        first.find_element(By.CSS_SELECTOR, ".edit input").send_keys("Bands")
        first.find_element(By.CSS_SELECTOR, "button.rename").click()  # no token yet
        wait.until(lambda d: "Not saved" in d.find_element(By.ID, "substyle-note").text)
        assert "unauthorized" in browser.find_element(By.ID, "substyle-note").text

        browser.find_element(By.ID, "admin-token").send_keys(token)
        first.find_element(By.CSS_SELECTOR, "button.rename").click()
        wait.until(lambda d: d.execute_script(headings)[0].startswith("Bands ·"))

        second = browser.find_elements(By.CSS_SELECTOR, "#substyles .substyle")[1]
        Select(second.find_element(By.CSS_SELECTOR, ".edit select")).select_by_index(0)
        second.find_element(By.CSS_SELECTOR, "button.merge").click()
        wait.until(lambda d: len(d.execute_script(headings)) == 1)
        assert browser.execute_script(headings) == [f"Bands · {PER_CLASS} items"]

        only = browser.find_elements(By.CSS_SELECTOR, "#substyles .substyle")[0]
        Select(
            only.find_element(By.CSS_SELECTOR, "select[aria-label='split into']")
        ).select_by_value("2")
        only.find_element(By.CSS_SELECTOR, "button.split").click()
        wait.until(lambda d: len(_sizes(d)) == 2)
        before = _sizes(browser)
        assert sum(before.values()) == PER_CLASS

        source = browser.find_elements(By.CSS_SELECTOR, "#substyles .substyle")[0]
        moved_from = source.get_attribute("data-cluster")
        (moved_to,) = set(before) - {moved_from}
        Select(source.find_element(By.CSS_SELECTOR, ".card select.move")).select_by_value(moved_to)
        after = {**before, moved_from: before[moved_from] - 1, moved_to: before[moved_to] + 1}
        wait.until(lambda d: _sizes(d) == after)

        Select(browser.find_element(By.ID, "substyle-k")).select_by_value("3")
        keep = wait.until(lambda d: d.find_elements(By.ID, "keep-preview"))[0]
        assert keep.text == "Keep these 3 sub-styles"
        keep.click()
        wait.until(
            lambda d: "as the catalog shows them" in d.find_element(By.ID, "substyle-note").text
        )
        assert len(_sizes(browser)) == 3 and sum(_sizes(browser).values()) == PER_CLASS
        assert not browser.find_elements(By.ID, "keep-preview")

        folder = os.environ.get("JEWELRY_SCREENSHOTS")
        section = browser.find_element(By.CSS_SELECTOR, "section:has(#substyles)")
        if folder:
            section.screenshot(str(Path(folder) / "substyles-edited-desktop.png"))
        browser.set_window_size(390, 844)  # a phone
        overflow = "return document.documentElement.scrollWidth - window.innerWidth"
        wait.until(lambda d: d.execute_script(overflow) <= 0)
        for button in browser.find_elements(By.CSS_SELECTOR, "#substyles .edit button"):
            assert button.is_displayed() and button.size["height"] >= 40
        if folder:
            section.screenshot(str(Path(folder) / "substyles-edited-phone.png"))
    finally:
        server.stop()
