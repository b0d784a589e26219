"""Screenshots of the web page at desktop and phone width, serving a real bundle (docs/screenshots).

`python -m benchmarks.screenshots [--bundle data/07_model_output/bundle] [--photo PHOTO]`: starts
the service on 127.0.0.1 with the bundle, uploads the photo (default: the first catalog photo under
data/01_raw/jewelry) in headless Chromium and saves `page-desktop.png` and `page-phone.png`. The
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
    finally:
        browser.quit()
        server.stop()


if __name__ == "__main__":
    main()
