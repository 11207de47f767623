"""The UI in a real browser: Debian's headless Chromium driven by Selenium.

Images are pushed through the APIs (v2 image, multi-arch index, referrers, a v1 image);
then the browser signs in, browses, searches, opens an image, deletes a tag, and checks
what the pages show, that their script ran under the Content-Security-Policy, and that
the policy was never violated. Screenshots of the main pages go to ``UI_SCREENSHOT_DIR``
when set, else to the test's temp directory. In CI (``CI=true``) a missing Chromium is a
failure, elsewhere a skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Client
from tests.ui.conftest import ALICE, SIGNATURE_TYPE, XSS_SCRIPT, Seeded

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,860",
]


def _installed(name: str, *candidates: str) -> str:
    for candidate in candidates:
        if Path(candidate).exists():
            return candidate
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (.ci/run installs chromium chromium-driver)")
        pytest.skip(f"{name} is not installed")
    return path


@dataclass
class Chromium:
    browser: str
    driver: str
    profile: Path
    screenshots: Path


@pytest.fixture
def chromium(tmp_path: Path) -> Chromium:
    browser = _installed("chromium", "/usr/bin/chromium")
    driver = _installed("chromedriver", "/usr/bin/chromedriver")
    shots = Path(os.environ.get("UI_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    return Chromium(browser, driver, tmp_path / "chromium-profile", shots)


@dataclass
class Seen:
    """What the browser saw, checked back on the event loop."""

    texts: dict[str, str] = field(default_factory=dict)
    copy_label: str = ""
    csp_errors: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)


def drive(chromium: Chromium, base: str, seeded: Seeded) -> Seen:
    """The whole session in a browser (blocking: runs in a worker thread)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium.browser
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={chromium.profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromium.driver), options=options)
    seen = Seen()
    try:
        wait = WebDriverWait(driver, 20)

        def shot(name: str) -> None:
            path = chromium.screenshots / f"{name}.png"
            driver.save_screenshot(str(path))
            seen.shots.append(path)

        def text() -> str:
            return str(driver.find_element(By.TAG_NAME, "main").text)

        driver.get(base + "ui/")
        seen.texts["catalog-anonymous"] = text()
        driver.find_element(By.ID, "login-link").click()
        driver.find_element(By.ID, "username").send_keys(ALICE[0])
        driver.find_element(By.ID, "password").send_keys(ALICE[1])
        driver.find_element(By.ID, "sign-in").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "logout")))
        seen.texts["catalog"] = text()
        shot("catalog")

        search = driver.find_element(By.ID, "q")
        search.send_keys("secret")
        driver.find_element(By.ID, "search").click()
        wait.until(expected_conditions.url_contains("q=secret"))
        seen.texts["search"] = text()

        driver.get(base + "ui/")
        driver.find_element(By.LINK_TEXT, "alice/app").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "tags")))
        seen.texts["repository"] = text()
        shot("repository")
        button = driver.find_element(By.CSS_SELECTOR, "button[data-copy]")
        button.click()
        wait.until(lambda d: button.text != "copy")
        seen.copy_label = str(button.text)

        driver.find_element(By.CSS_SELECTOR, 'tr[data-tag="v1.0"] td a').click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "layers")))
        seen.texts["image"] = text()
        shot("image")

        driver.get(base + f"ui/r/alice/app/-/manifest/{seeded.index_digest}")
        seen.texts["index"] = text()
        shot("index")
        driver.find_element(
            By.XPATH, "//table[@id='platforms']//tr[td[1]='linux/arm64/v8']//a"
        ).click()
        wait.until(expected_conditions.url_contains(seeded.arm_digest))
        seen.texts["platform"] = text()

        driver.get(base + f"ui/r/alice/oldschool/-/v1/{seeded.v1_top}")
        seen.texts["v1"] = text()
        shot("v1-image")

        driver.get(base + "ui/r/alice/app")
        driver.find_element(By.CSS_SELECTOR, 'tr[data-tag="v1.0"] button.delete-tag').click()
        wait.until(expected_conditions.alert_is_present())
        driver.switch_to.alert.accept()
        wait.until(expected_conditions.url_contains("notice=tag-deleted"))
        seen.texts["after-delete"] = text()
        shot("after-delete")

        for entry in driver.get_log("browser"):  # type: ignore[no-untyped-call]
            if "Content Security Policy" in entry.get("message", ""):
                seen.csp_errors.append(entry["message"])
    finally:
        driver.quit()
    return seen


async def test_browse_search_inspect_and_delete_in_chromium(
    seeded: Seeded, client: Client, chromium: Chromium
) -> None:
    base = str(client.make_url("/"))
    seen = await asyncio.to_thread(drive, chromium, base, seeded)

    assert "alice/app" in seen.texts["catalog-anonymous"]
    assert "alice/secret" not in seen.texts["catalog-anonymous"]
    assert "alice/secret" in seen.texts["catalog"]  # alice's own private repository
    assert "alice/secret" in seen.texts["search"]
    assert "alice/app" not in seen.texts["search"]
    repository = seen.texts["repository"]
    assert "v1.0" in repository
    assert "linux/arm64/v8" in repository
    assert "podman pull" in repository
    assert seen.copy_label in ("copied", "selected")  # ui.js ran under the CSP
    image = seen.texts["image"]
    assert "/bin/server --port=8080" in image
    assert f"HOSTILE={XSS_SCRIPT}" in image  # shown literally, never executed
    assert SIGNATURE_TYPE in image
    assert "linux/amd64" in seen.texts["index"]
    assert seeded.arm_digest in seen.texts["platform"]
    assert seeded.v1_base[:12] in seen.texts["v1"]
    after = seen.texts["after-delete"]
    assert "The tag was deleted." in after
    assert "v1.0" not in after
    assert "multi" in after
    assert seen.csp_errors == []
    for path in seen.shots:
        assert path.stat().st_size > 5000, path  # a rendered page, not a blank one
    async with client.get("/v2/alice/app/tags/list") as resp:
        assert (await resp.json())["tags"] == ["multi"]
