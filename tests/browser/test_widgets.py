"""Every lesson with a widget, run in JupyterLab in headless Chromium with live widgets, as a
student sees it (the cells its widgets need: ``lessons.needed_cells``). Each widget renders (no
"Error displaying widget", no bare text repr, one figure), and a change to one of its controls
redraws its output. Lesson 02 is then saved and reopened: its widgets come back with their figures
from the saved widget state. The chat page of ``minir1 serve`` streams a reply to a typed question.

Run with ``pytest --browser tests/browser`` (``make browser``, part of ``make test``); skipped
without Chromium and chromedriver (``.ci/run`` installs Debian's).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.browser.conftest import (
    ROOT,
    screenshots,
    wait_for_http,
    widget_state_saving,
)
from tests.browser.lessons import needed_cells, widget_lessons
from tests.conftest import free_port

pytestmark = pytest.mark.browser

# what JupyterLab shows for a widget it cannot draw: an error, or the kernel's text repr
BROKEN = re.compile(r"Error displaying widget|Loading widget\.\.\.|^(interactive|VBox|HBox)\(",
                    re.MULTILINE)
LESSON_TIMEOUT = 240  # seconds to run a lesson's widget cells in the ci profile
NOTEBOOKS = ROOT / "notebooks"


# ----------------------------------------------------------------------------- JupyterLab by JS
# JupyterLab exposes its application as window.jupyterapp (--LabApp.expose_app_in_browser)
JS_KERNEL = """
const app = window.jupyterapp; if (!app) return 'loading';
const w = app.shell.currentWidget;
if (!w || !w.sessionContext || !w.context.isReady) return 'loading';
const s = w.sessionContext.session;
return s && s.kernel ? s.kernel.status + ':' + w.context.path : 'loading';
"""
# run the cells at arguments[0] in order, one after the other, stopping at the first error;
# window.minir1Run holds the progress, which the test polls
JS_RUN = """
const w = window.jupyterapp.shell.currentWidget, app = window.jupyterapp;
const state = window.minir1Run = {done: false, ran: 0, errors: []};
(async () => {
  for (const i of arguments[0]) {
    w.content.activeCellIndex = i;
    w.content.deselectAll();
    await app.commands.execute('notebook:run-cell');
    const errors = w.content.widgets[i].model.outputs.toJSON()
                    .filter(o => o.output_type === 'error');
    state.errors = errors.map(o => `cell ${i}: ${o.ename}: ${o.evalue}`);
    state.ran += 1;
    if (errors.length) break;
  }
  state.done = true;
})();
"""
JS_PROGRESS = """
const w = window.jupyterapp.shell.currentWidget, state = window.minir1Run;
return {...state, status: w.sessionContext.session.kernel.status};
"""
JS_CLOSE = """
const done = arguments[arguments.length - 1];
const w = window.jupyterapp.shell.currentWidget;
w.sessionContext.shutdown().then(() => { w.context.model.dirty = false; w.dispose(); done(true); });
"""
JS_SAVE = """
const done = arguments[arguments.length - 1];
window.jupyterapp.shell.currentWidget.context.save().then(() => done(true));
"""


def wait_until(check, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def open_notebook(driver, lab: str, name: str) -> None:
    """``name`` open in JupyterLab with an idle kernel; the page loads once per session (with
    ?reset: a fresh workspace), later notebooks open in it."""
    if not driver.current_url.startswith(f"{lab}/lab"):
        driver.get(f"{lab}/lab?reset")
        wait_until(lambda: driver.execute_script(
            "return !!window.jupyterapp && window.jupyterapp.commands.hasCommand("
            "'docmanager:open')"), 120, "JupyterLab to load")
    driver.execute_script("window.jupyterapp.commands.execute('docmanager:open',"
                          " {path: arguments[0], factory: 'Notebook'})", name)
    wait_until(lambda: driver.execute_script(JS_KERNEL) == f"idle:{name}", 120,
               f"{name} to open with an idle kernel")


def run_widget_cells(driver, name: str) -> None:
    """Run, in the open notebook, the cells ``name``'s widgets need (``lessons.needed_cells``)."""
    cells = needed_cells(NOTEBOOKS / name)
    driver.execute_script(JS_RUN, cells)

    def finished():
        state = driver.execute_script(JS_PROGRESS)
        assert not state["errors"], f"{name}: {state['errors']}"
        return state["done"] and state["status"] == "idle"

    wait_until(finished, LESSON_TIMEOUT, f"{name}'s {len(cells)} widget cells to run")


def close_notebook(driver) -> None:
    driver.execute_async_script(JS_CLOSE)


@contextlib.contextmanager
def lesson(driver, lab, name: str, test: str) -> Iterator[None]:
    """``name`` open in JupyterLab; on a failure, screenshots before its kernel shuts down."""
    open_notebook(driver, lab.url, name)
    try:
        yield
    except BaseException:
        screenshots(driver, test)
        raise
    finally:
        close_notebook(driver)


def output_texts(driver) -> list[str]:
    return [e.text for e in driver.find_elements("css selector", ".jp-OutputArea-output")]


def assert_rendered(driver, name: str) -> None:
    """No widget output is an error or a bare repr, and no static figure sits above live controls
(a lesson may show another figure after one)."""
    broken = [t for t in output_texts(driver) if BROKEN.search(t)]
    assert not broken, f"{name}: widgets not rendered: {broken[:3]}"
    for ui in driver.find_elements("css selector", ".widget-interact"):
        assert len(ui.find_elements("css selector", "img")) == 1, f"{name}: not one figure"
        above = ui.find_elements("xpath", "./ancestor::div[contains(concat(' ', @class, ' '),"
                                 " ' jp-OutputArea-child ')][1]/preceding-sibling::div//img")
        assert not above, f"{name}: {len(above)} figure(s) above a live widget"


# ------------------------------------------------------------------------------- interactions
def _output_of(ui) -> str:
    return ui.find_element("css selector", ".widget-output").get_attribute("innerHTML")


def change_one_control(driver, ui) -> str:
    """Change the first control of an ``interactive`` as a user would; return what was done."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    control = ui.find_element("css selector", ".widget-interact > .jupyter-widgets")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", control)
    label = control.find_elements("css selector", ".widget-label")
    what = label[0].text if label else "control"
    if selects := control.find_elements("css selector", "select"):
        menu = Select(selects[0])
        values = [o.get_attribute("value") for o in menu.options]
        now = menu.first_selected_option.get_attribute("value")
        menu.select_by_value(next(v for v in values if v != now))
        return f"{what}: chose another option"
    if handles := control.find_elements("css selector", ".noUi-handle"):
        handles[0].click()
        key = Keys.ARROW_LEFT if handles[0].get_attribute("aria-valuenow") == \
            handles[0].get_attribute("aria-valuemax") else Keys.ARROW_RIGHT
        handles[0].send_keys(key)
        return f"{what}: moved the slider"
    box = control.find_element("css selector", "input")
    old = box.get_attribute("value")
    new = str(int(old) + 1) if old.lstrip("-").isdigit() else old + "1"
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(new, Keys.ENTER)
    return f"{what}: typed {new!r}"


def ask_the_chat(driver, box) -> str:
    from selenium.webdriver.common.keys import Keys

    html = box.find_elements("css selector", ".widget-html")[-1]
    before = html.get_attribute("innerHTML")
    text = box.find_element("css selector", "input[type=text]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", text)
    text.send_keys(Keys.CONTROL, "a")
    text.send_keys("12+34", Keys.ENTER)
    return before


# ---------------------------------------------------------------------------------- schedule
# Seconds each test takes in the ci profile with both workers busy on two vCPUs (make browser
# --durations=0 on an AMD EPYC without AVX-512); a test not listed counts
# DEFAULT_SECONDS. Most of it is the training the widgets show, and two lessons take a third of
# the whole, so `make browser` (-n 2 --dist loadgroup) hands its two workers one fixed group each,
# filled longest first into the emptier one: xdist's own balancing queues tests ahead, and both
# long lessons could land on one worker.
SECONDS = {"10_r1_pipeline.ipynb": 196, "07_pretraining.ipynb": 136, "12_scaling_up.ipynb": 89,
           "05_multi_token_prediction.ipynb": 83, "09_r1_zero.ipynb": 71,
           "11_distillation.ipynb": 64, "04_mixture_of_experts.ipynb": 49,
           "01_tokens_and_tasks.ipynb": 34, "03_latent_attention.ipynb": 28, "reopen": 23,
           "chat page": 5}
DEFAULT_SECONDS = 18


def worker_groups(tests: list[str], seconds: dict[str, float] = SECONDS) -> dict[str, str]:
    """Each test's group ("a" or "b"): longest first into the group with less to do."""
    load = {"a": 0.0, "b": 0.0}
    group = {}
    for test in sorted(tests, key=lambda t: -seconds.get(t, DEFAULT_SECONDS)):
        group[test] = min(load, key=load.get)
        load[group[test]] += seconds.get(test, DEFAULT_SECONDS)
    return group


LESSONS = widget_lessons(NOTEBOOKS)
GROUP = worker_groups([*LESSONS, "reopen", "chat page"])


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xdist_group(GROUP[n]))
                                  for n in LESSONS])
def test_every_widget_renders_and_redraws(browser, lab, name, request):
    with lesson(browser, lab, name, request.node.name):
        run_widget_cells(browser, name)
        assert_rendered(browser, name)
        interacts = browser.find_elements("css selector", ".widget-interact")
        chats = [b for b in browser.find_elements("css selector", ".widget-vbox")
                 if b.find_elements("css selector", "button")
                 and b.find_elements("css selector", "input[type=text]")
                 and not b.find_elements("xpath", "ancestor::*[contains(@class,'widget-vbox')]")]
        assert interacts or chats, f"{name}: no live widget on the page"
        for ui in interacts:
            before = _output_of(ui)
            did = change_one_control(browser, ui)
            wait_until(lambda ui=ui, b=before: _output_of(ui) != b and "<img" in _output_of(ui),
                       60, f"{name}: the figure to redraw after '{did}'")
        for box in chats:
            before = ask_the_chat(browser, box)
            html = box.find_elements("css selector", ".widget-html")[-1]
            wait_until(lambda h=html, b=before: h.get_attribute("innerHTML") != b
                       and "thought for" in h.get_attribute("innerHTML")
                       and "12+34" in h.get_attribute("innerHTML"), 120,
                       f"{name}: the chat to answer")
        assert_rendered(browser, name)


@pytest.mark.xdist_group(GROUP["reopen"])
def test_a_saved_lesson_reopens_with_its_figures(browser, lab, request):
    """Live widgets, saved and reopened with a new kernel: their figures come back from the saved
    widget state instead of 'Error displaying widget: model not found'."""
    assert widget_state_saving(), "JupyterLab does not save widget state here: run `make venv`"
    name = "02_rmsnorm_rope_yarn.ipynb"
    with lesson(browser, lab, name, request.node.name + "-live"):
        run_widget_cells(browser, name)
        figures = len(browser.find_elements("css selector", ".widget-interact img"))
        assert figures >= 1
        browser.execute_async_script(JS_SAVE)
    saved = json.loads((lab.root / name).read_text())
    assert "application/vnd.jupyter.widget-state+json" in saved["metadata"].get("widgets", {})
    with lesson(browser, lab, name, request.node.name + "-reopened"):
        wait_until(lambda: len(browser.find_elements("css selector", ".widget-interact img"))
                   == figures, 30, "the saved widgets to render")
        time.sleep(2)  # the rest of the saved widgets too
        assert_rendered(browser, name)


@pytest.mark.xdist_group(GROUP["chat page"])
def test_the_chat_page_streams_thinking_and_answer(browser):
    from selenium.webdriver.common.keys import Keys

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "minir1", "serve", "--run",
                             str(ROOT / "data" / "base-cpu"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, proc, timeout=120)
        browser.get(url)
        box = browser.find_element("id", "q")
        box.send_keys("12+34", Keys.ENTER)
        find = browser.find_element
        wait_until(lambda: find("id", "answer").text.strip(), 60, "the streamed answer")
        # textContent: the folded <details> hides its text from .text
        thinking = find("id", "thinking").get_attribute("textContent")
        answer = find("id", "answer").get_attribute("textContent")
        assert thinking.strip(), "no thinking streamed"
        assert not find("id", "note").text, find("id", "note").text
        # the base model answers its own way: what matters is that both parts arrived, apart
        assert "<think>" not in thinking + answer and "<answer>" not in answer
        assert not find("id", "box").get_attribute("open")  # the thinking folds for the answer
    finally:
        proc.terminate()
        proc.wait(timeout=20)
