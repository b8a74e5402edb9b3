"""The picture of `nmt serve`'s page in the docs: start a server on a checkpoint, translate a sentence in headless
chromium and save the page with its attention view.

    python examples/serve/screenshot.py CHECKPOINT [--text "..."] [--out docs/serve-page.png]

Needs chromium and chromium-driver (apt) and selenium (the test extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--text", default="A little girl in a pink dress climbs the stairs.")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "serve-page.png")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "nmt", "serve", "--checkpoint", args.checkpoint, "--port",
                               str(port)], env={**os.environ, "PYTHONPATH": str(REPO)})
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1000,1250"):
        options.add_argument(argument)
    driver = None
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
        driver.get(url + "/")
        source = driver.find_element(By.ID, "source")
        source.send_keys(args.text)
        driver.find_element(By.ID, "translate").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "translation").text.strip())
        row = driver.find_elements(By.CSS_SELECTOR, "#attention .row-label")[2]
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('mouseenter'))", row)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out}")
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
