"""Screenshots of the web page at desktop and phone width, and of its sub-style view, serving a real
bundle (docs/screenshots).

`python -m benchmarks.screenshots [--bundle data/07_model_output/bundle] [--photo PHOTO]`: starts
the service on 127.0.0.1 with the bundle, uploads the photo (default: the first catalog photo under
data/01_raw/jewelry) in headless Chromium and saves `page-desktop.png` and `page-phone.png`, then
the sub-style section as served and as a preview of 3 (`substyles[-preview]-desktop.png`). The
layout itself (no horizontal scroll, pictures load, k cards, tap targets) is checked by
tests/serving/test_web_page.py.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks._report import ROOT, run_outputs
from jewelry_testing.servers import start_bentoml

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


def substyle_screenshots(browser, url: str, out: Path, preview_k: int = 3) -> None:
    """The sub-style section at desktop width: the first category as served, then a preview of
    `preview_k` sub-styles (`substyles-desktop.png`, `substyles-preview-desktop.png`)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.set_window_size(*SIZES["desktop"])
    browser.get(url + "/")
    wait = WebDriverWait(browser, 60)
    settled = "return [...document.images].every(i => i.complete)"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#substyles .substyle"))
    for name, choose in (("substyles", None), ("substyles-preview", str(preview_k))):
        if choose:
            Select(browser.find_element(By.ID, "substyle-k")).select_by_value(choose)
            wait.until(lambda d: d.find_element(By.ID, "substyle-note").text.startswith("Preview"))
        wait.until(lambda d: d.execute_script(settled))
        section = browser.find_element(By.CSS_SELECTOR, "section:has(#substyles)")
        full = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(SIZES["desktop"][0], min(int(full) + 140, 8000))
        section.screenshot(str(out / f"{name}-desktop.png"))
        print(f"{name}: {out / f'{name}-desktop.png'}")


def main(argv: list[str] | None = None) -> None:
    """Serve the bundle, search with the photo at each width, save the screenshots."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=run_outputs()[1])
    parser.add_argument("--photo", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/screenshots")
    args = parser.parse_args(argv)
    photo = args.photo or sorted(run_outputs()[0].glob("*/*.*"))[0]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="screenshots-"))
    server = start_bentoml(args.bundle.resolve(), work / "serve.log", {"JEWELRY_WORKERS": "1"})
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        for name, (width, height) in SIZES.items():
            browser.set_window_size(width, height)
            browser.get(server.url + "/")
            wait = WebDriverWait(browser, 30)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#browse .card"))
            browser.find_element(By.ID, "file").send_keys(str(photo.resolve()))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card"))
            wait.until(
                lambda d: d.execute_script("return [...document.images].every(i => i.complete)")
            )
            full = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(width, min(int(full) + 140, 4000))  # the whole page, not a view
            browser.save_screenshot(str(args.out / f"page-{name}.png"))
            print(f"{name}: {args.out / f'page-{name}.png'}")
        substyle_screenshots(browser, server.url, args.out)
    finally:
        browser.quit()
        server.stop()


if __name__ == "__main__":
    main()
