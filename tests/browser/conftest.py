"""JupyterLab and headless Chromium for the browser tests (``pytest --browser tests/browser``).

``lab`` starts JupyterLab on a free local port over a copy of the lessons, with the ``ci``
profile's sizes and live widgets on (``MINIR1_WIDGETS=1``), so every widget renders as it does for
a student. ``browser`` is a headless Chromium driven by selenium through Debian's chromedriver.
When a test fails, a screenshot of the page and of each widget on it goes to
``MINIR1_SCREENSHOTS`` (default ``browser-screenshots/`` at the repository root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SHOTS = Path(os.environ.get("MINIR1_SCREENSHOTS", ROOT / "browser-screenshots"))
# Chromium's own background traffic has nowhere to go on a closed network: switch it off
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1000")
# JupyterLab's user settings for the test: every cell in the DOM (not only those on screen), no
# news pop-up over the widgets. Widget state saving comes from the installed overrides.json
# (`make venv`), as a student's `make lab` gets it.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


_TAKEN: set[str] = set()  # tests whose screenshots this process has taken


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.2)


def widget_state_saving() -> bool:
    """Whether this environment's JupyterLab saves widget state with the notebook."""
    path = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    if not path.exists():
        return False
    plugin = json.loads(path.read_text()).get("@jupyter-widgets/jupyterlab-manager:plugin", {})
    return bool(plugin.get("saveState"))


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """``url`` and ``root`` of a JupyterLab serving a copy of notebooks/ (the originals stay
    untouched)."""
    home = tmp_path_factory.mktemp("lab")
    notebooks = home / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    for name, values in LAB_SETTINGS.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = free_port()
    env = {**os.environ, "MINIR1_PROFILE": "ci", "MINIR1_WIDGETS": "1", "OMP_NUM_THREADS": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_DATA_DIR": str(home / "data")}  # its own notebook signatures
    # trusted as `make lab` trusts them: the lessons' committed outputs are the project's own, and
    # an untrusted notebook shows a saved widget as its text repr
    subprocess.run([sys.executable, "-m", "nbformat.sign", *map(str, notebooks.glob("*.ipynb"))],
                   env=env, check=True, capture_output=True)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--ServerApp.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={notebooks}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=", "--allow-root"]
    log = (home / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/api/status", proc)
        yield SimpleNamespace(url=url, root=notebooks)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # selenium's usage statistics: no network
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    driver = item.funcargs.get("browser") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and driver is not None:
        screenshots(driver, item.name)
    return report


def screenshots(driver, name: str) -> None:
    """The whole page, then each widget on it, as PNGs under SHOTS/<test name>/ (once per test:
    a test that took them before closing its notebook keeps those)."""
    from selenium.common.exceptions import WebDriverException

    if name in _TAKEN:
        return
    _TAKEN.add(name)
    folder = SHOTS / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    shutil.rmtree(folder, ignore_errors=True)  # an earlier run's
    folder.mkdir(parents=True)
    try:
        driver.save_screenshot(str(folder / "page.png"))
        widgets = driver.find_elements("css selector", ".jp-OutputArea-output > .jupyter-widgets,"
                                       " .jp-OutputArea-output .widget-interact")
        for i, element in enumerate(widgets):
            driver.execute_script("arguments[0].scrollIntoView()", element)
            element.screenshot(str(folder / f"widget-{i:02d}.png"))
        (folder / "page.txt").write_text(driver.find_element("tag name", "body").text)
    except WebDriverException as err:  # a crashed page still leaves whatever was written
        (folder / "error.txt").write_text(str(err))
