"""``personsearch serve`` in a real browser: the command runs (uvicorn, 127.0.0.1, a free port) over a small
index, and headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by selenium; nothing is
downloaded) uploads a query image, clicks a detected person, sees the ranked hits, opens a hit's frame,
drags a box, and gets a readable error for a file that is not an image. Screenshots go to a temporary folder
(and to ``$PERSONSEARCH_SCREENSHOT`` when set: ``docs/images/serve_page.png`` is made that way).

Skipped, saying how to install them, where the browser or its driver is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_footage_query import env  # noqa: F401  (the module's tiny checkpoint and index)

INSTALL = "apt-get install chromium chromium-driver (Debian/Ubuntu; as root) and pip install selenium"
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
DRIVER = "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else shutil.which("chromedriver")

try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = pytest.mark.skipif(
    not (HAVE_SELENIUM and CHROMIUM and DRIVER),
    reason=f"no headless browser for the web page test: {INSTALL}",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(env):  # noqa: F811
    """``personsearch serve`` in a subprocess on 127.0.0.1; its base URL."""
    port = _free_port()
    log = env["work"] / "serve.log"
    command = [sys.executable, "-m", "personsearch.cli", "serve", "--index", str(env["index"])]
    command += ["--port", str(port), "--device", "cpu"]
    environ = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environ)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"personsearch serve exited ({process.returncode}): {log.read_text()}")
            try:
                with urllib.request.urlopen(url + "/api/info", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"personsearch serve did not answer within 180 s: {log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser(env):  # noqa: F811
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium manager: never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1500,1000")
    options.add_argument(f"--user-data-dir={env['work'] / 'chromium-profile'}")
    service = Service(executable_path=DRIVER, log_output=str(env["work"] / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except Exception as exc:  # a browser that cannot start here (no display libraries, ...)
        pytest.skip(f"headless Chromium does not start ({' '.join(str(exc).split())[:300]}): {INSTALL}")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=120, what="the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except Exception:
        status = driver.find_element("id", "status").text
        pytest.fail(f"timed out waiting for {what}; status line: {status!r}")


def _loaded(driver, element) -> bool:
    return bool(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", element))


def test_upload_click_a_person_and_see_ranked_hits(server, browser, env, tmp_path):  # noqa: F811
    from selenium.common.exceptions import ElementClickInterceptedException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    assert browser.title == "personsearch"
    _wait(browser, lambda d: "images" in d.find_element(By.ID, "info").text, 60, "the index info")

    # upload the query image; the detected people are drawn over it, numbered
    scenes = sorted((env["work"] / "CUHK-SYSU" / "Image" / "SSM").glob("*.jpg"))
    query_image = scenes[9] if len(scenes) > 9 else env["query_image"]  # one the index does not hold
    browser.find_element(By.ID, "file-input").send_keys(str(query_image))
    people = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#people .person"), what="detected people")
    assert [p.text for p in people] == [str(n) for n in range(1, len(people) + 1)]
    assert _loaded(browser, browser.find_element(By.ID, "query-img"))
    assert "detected" in browser.find_element(By.ID, "status").text

    # click one (the top-most that is not covered by another box)
    for person in reversed(people):
        try:
            person.click()
            break
        except ElementClickInterceptedException:
            continue
    else:
        pytest.fail("no detected person could be clicked")
    hits = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#hits .hit"), what="ranked hits")
    assert "selected" in person.get_attribute("class")
    assert [h.get_attribute("data-rank") for h in hits] == [str(n) for n in range(1, len(hits) + 1)]
    first = hits[0].text
    assert first.startswith("#1") and ("image" in first or "video" in first)
    sims = [float(h.find_element(By.CLASS_NAME, "rank").text.split()[1]) for h in hits]
    assert sims == sorted(sims, reverse=True)
    paths = [h.find_element(By.CLASS_NAME, "path").text for h in hits]
    assert all(p.startswith(str(env["footage"])) for p in paths)
    assert any(p.endswith("walk.mp4") for p in paths) or len(hits) == 20
    shown = hits[:3]  # thumbnails load lazily: those in view
    _wait(browser, lambda d: all(_loaded(d, h.find_element(By.TAG_NAME, "img")) for h in shown), 60, "thumbnails")

    shot = tmp_path / "serve_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    wanted = os.environ.get("PERSONSEARCH_SCREENSHOT")
    if wanted:
        Path(wanted).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, wanted)

    # a hit opens its whole frame; a click closes it
    hits[0].click()
    viewer = browser.find_element(By.ID, "viewer")
    _wait(browser, lambda d: viewer.is_displayed() and _loaded(d, d.find_element(By.ID, "viewer-img")), 60, "frame")
    assert paths[0] in browser.find_element(By.ID, "viewer-caption").text
    viewer.click()
    _wait(browser, lambda d: not viewer.is_displayed(), 30, "the frame to close")

    # drag a box by hand: a new query with that box
    image = browser.find_element(By.ID, "query-img")
    size = image.size
    actions = ActionChains(browser)
    actions.move_to_element_with_offset(image, -size["width"] // 4, -size["height"] // 4).click_and_hold()
    actions.move_by_offset(size["width"] // 6, size["height"] // 3).release().perform()
    _wait(browser, lambda d: d.find_element(By.ID, "status").text.startswith("box "), what="the drawn box's hits")
    assert browser.find_element(By.ID, "drawn").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#hits .hit")


def test_a_file_that_is_not_an_image_shows_the_message(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    browser.find_element(By.ID, "file-input").send_keys(str(notes))
    status = browser.find_element(By.ID, "status")
    _wait(browser, lambda d: "error" in status.get_attribute("class"), 60, "the error")
    assert "not an image" in status.text and "notes.png" in status.text
    assert not browser.find_element(By.ID, "stage").is_displayed()


@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/api/images/../x"])
def test_the_real_server_refuses_path_traversal(server, path):
    """Raw request lines (no client-side URL normalisation) against uvicorn itself."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 404), reply[:200]
    assert b"root:x:0:0" not in reply


def test_the_real_server_refuses_foreign_host_headers(server):
    request = urllib.request.Request(server + "/api/info", headers={"Host": "attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
