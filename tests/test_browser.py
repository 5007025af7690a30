"""What the learner sees, where the learner sees it: every solution and exercise notebook, executed
under `ci` in a temporary copy, opened in JupyterLab (started from this checkout's environment on
127.0.0.1) in headless Chromium. Every markdown image has loaded, every plotly figure has drawn
its plot, no figure is wider than its output area, and the browser console shows no error.

Playwright (from PyPI) drives the system's Chromium (the Debian package `chromium`; Playwright
cannot download its own browsers here). Without Chromium the test is skipped with one line;
`.ci/run` installs it, so CI always runs the test."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbclient
import nbformat
import pytest

from utils.export import ROOT

CHROMIUM = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None
)
NOTEBOOKS = [
    *sorted((ROOT / "notebooks").glob("*.ipynb")),
    *sorted((ROOT / "exercises").glob("*.ipynb")),
]
PLOTLY = "application/vnd.plotly.v1+json"
# JupyterLab's settings for the test: every cell rendered (by default Lab draws only the cells in
# view), nothing saved back, no news fetched from the internet
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium here (the Debian package `chromium`): JupyterLab not checked in a browser",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _execute(path: Path, env: dict) -> None:
    """Run the notebook in place under `ci`, as a learner would (an exercise notebook's stubs
    raise, and the cells after them run on), and trust its outputs, as JupyterLab trusts what a
    learner ran (untrusted, plotly's figures would not be drawn)."""
    from nbformat.sign import NotebookNotary

    nb = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.update(env)  # the kernel's environment
    try:
        nbclient.NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    NotebookNotary(data_dir=env["JUPYTER_DATA_DIR"]).sign(nb)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A temporary copy of the notebooks and JupyterLab serving it: (url, token, copy, env)."""
    pytest.importorskip("playwright", reason="playwright is not installed (requirements.txt)")
    base = tmp_path_factory.mktemp("lab")
    copy = base / "repo"
    for folder in ("notebooks", "exercises", "utils"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("backup", ".*"))
    env = {
        "TUTORIAL_CONFIG": "ci",
        "HF_HUB_OFFLINE": "1",
        "TUTORIAL_CHECKPOINTS": str(base / "checkpoints"),
        "IPYTHONDIR": str(base / "ipython"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_DATA_DIR": str(base / "data"),  # where trust is recorded
        "JUPYTER_CONFIG_DIR": str(base / "config"),
    }
    settings = base / "settings"
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    jupyter = Path(sys.executable).with_name("jupyter")
    full_env = {**os.environ, **env}
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        jupyter,
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={copy}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--ServerApp.open_browser=False",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
    ]
    log = open(base / "lab.log", "w")
    server = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError((base / "lab.log").read_text()[-2000:])
                time.sleep(0.5)
        yield url, token, copy, env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _expected_figures(path: Path) -> int:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return sum(
        PLOTLY in output.get("data", {})
        for cell in nb["cells"]
        for output in cell.get("outputs", [])
    )


# what the page reports: markdown images that did not load, figures drawn, figures too wide
_INSPECT = """() => {
  const images = [...document.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown img')];
  const plots = [...document.querySelectorAll('.jp-OutputArea .js-plotly-plot')];
  const tooWide = plots.filter(plot => {
    const area = plot.closest('.jp-OutputArea').getBoundingClientRect();
    return [...plot.querySelectorAll('.main-svg')].some(
      svg => svg.getBoundingClientRect().right > area.right + 1);
  });
  return {
    images: images.length,
    broken: images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.alt),
    drawn: plots.filter(plot => plot.querySelector('.main-svg .plot')).length,
    tooWide: tooWide.length,
  };
}"""


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_jupyterlab_shows_every_image_and_figure_without_errors(notebook, lab, browser):
    url, token, copy, env = lab
    executed = copy / notebook.relative_to(ROOT)
    _execute(executed, env)
    figures = _expected_figures(executed)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        rel = executed.relative_to(copy).as_posix()
        page.goto(f"{url}/lab/tree/{rel}?token={token}&reset", wait_until="domcontentloaded")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        deadline = time.monotonic() + 60
        while True:  # images load and plotly draws after the page itself
            seen = page.evaluate(_INSPECT)
            if (seen["drawn"] >= figures and not seen["broken"]) or time.monotonic() > deadline:
                break
            page.wait_for_timeout(500)
        if os.environ.get("BROWSER_TEST_DUMP"):
            Path(os.environ["BROWSER_TEST_DUMP"]).write_text(page.content())
    finally:
        page.close()
    assert seen["images"] == 0 or not seen["broken"], f"images that did not load: {seen['broken']}"
    assert seen["drawn"] == figures, f"{seen['drawn']} of {figures} plotly figures drawn"
    assert seen["tooWide"] == 0, f"{seen['tooWide']} figures wider than their output area"
    assert not errors, f"browser console errors: {errors[:5]}"
