"""What the learner sees, where the learner sees it: every solution and exercise notebook, executed
under `ci` in a temporary copy, opened in JupyterLab (started from this checkout's environment on
127.0.0.1) in headless Chromium, on a laptop-sized page (1280 x 800). Every markdown image has
loaded, every plotly figure has drawn its plot, no figure is wider than its output area, no printed
line is wider than 100 characters (JupyterLab would break it mid-word) and the browser console
shows no error.

Playwright (from PyPI) drives the system's Chromium (the Debian package `chromium`; Playwright
cannot download its own browsers here). Without Chromium the test is skipped with one line;
`.ci/run` installs it, so CI always runs the test."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest
from notebook_runner import notebook_client, socket_folder
from terminal_text import without_colours

from utils.export import ROOT
from utils.printing import WIDTH, wrap_lines

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
        notebook_client(
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
    # the kernels JupyterLab starts for the pages listen on socket files, like the test's own,
    # in its runtime folder: one with a short path
    full_env = {**os.environ, **env, "JUPYTER_RUNTIME_DIR": str(socket_folder())}
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
        "--KernelManager.transport=ipc",
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


def _expected(path: Path) -> tuple[int, int]:
    """(markdown images, plotly figures) in the notebook's file: what the page must show."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    markdown = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    images = sum(len(re.findall(r"!\[|<img\b", text)) for text in markdown)  # alt text holds ]
    figures = sum(
        PLOTLY in output.get("data", {})
        for cell in nb["cells"]
        for output in cell.get("outputs", [])
    )
    return images, figures


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
    pending: images.filter(img => !img.complete).length,
    broken: images.filter(img => img.complete && img.naturalWidth === 0).map(img => img.alt),
    // drawn: plotly has laid out the figure and drawn its traces (heatmaps are g.hm)
    drawn: plots.filter(plot => plot._fullLayout && plot.querySelector('g.trace, g.hm')).length,
    tooWide: tooWide.length,
    // printed text that JupyterLab shows on more lines than it has
    wrapped: [...document.querySelectorAll('.jp-OutputArea-output pre')].filter(pre => {
      const lines = pre.textContent.replace(/\\n$/, '').split('\\n').length;
      const lineHeight = parseFloat(getComputedStyle(pre).lineHeight);
      return Math.round(pre.getBoundingClientRect().height / lineHeight) > lines;
    }).map(pre => pre.textContent),
  };
}"""


def _look(browser, lab, executed: Path, wait_s: float = 60) -> dict:
    """Open `executed` (in the lab's copy) in JupyterLab and report what the page shows, with the
    console's errors (those of external files, unreachable offline, kept apart)."""
    url, token, copy, _ = lab
    images, figures = _expected(executed)
    page = browser.new_page(viewport={"width": 1280, "height": 800})  # a laptop's screen
    errors, offline = [], []

    def on_console(message) -> None:
        if message.type != "error":
            return
        source = message.location.get("url", "")
        if source.startswith("attachment:"):
            return  # Lab fills the markdown in before it swaps attachments in: images checked
        if source.startswith("http") and urllib.parse.urlsplit(source).hostname != "127.0.0.1":
            offline.append(source)  # an external file (plotly.js's CDN): this machine is offline
            return
        errors.append(f"{message.text} ({source})" if source else message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        rel = executed.relative_to(copy).as_posix()
        page.goto(f"{url}/lab/tree/{rel}?token={token}&reset", wait_until="domcontentloaded")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        deadline = time.monotonic() + wait_s
        while True:  # images load and plotly draws after the page itself
            seen = page.evaluate(_INSPECT)
            done = seen["images"] >= images and not seen["pending"] and seen["drawn"] >= figures
            if done or time.monotonic() > deadline:
                break
            page.wait_for_timeout(500)
        if os.environ.get("BROWSER_TEST_DUMP"):
            Path(os.environ["BROWSER_TEST_DUMP"]).write_text(page.content())
        if os.environ.get("BROWSER_TEST_SHOTS"):  # a folder: one screenshot per figure, to look at
            for i, figure in enumerate(page.query_selector_all(".js-plotly-plot")):
                figure.scroll_into_view_if_needed()
                shot = Path(os.environ["BROWSER_TEST_SHOTS"]) / f"{executed.stem}_{i}.png"
                page.screenshot(path=str(shot))
    finally:
        page.close()
    expected = {"expected_images": images, "figures": figures}
    return {**seen, **expected, "errors": errors, "offline": sorted(set(offline))}


def _printed(executed: Path) -> tuple[list[str], set[str]]:
    """(each line the cells printed or showed as text, each line of their tracebacks), as the
    page shows them (a progress bar's line as it ended, after its last carriage return)."""
    nb = json.loads(executed.read_text(encoding="utf-8"))
    printed, tracebacks = [], set()
    for output in (output for cell in nb["cells"] for output in cell.get("outputs", [])):
        data = output.get("data", {})
        if output["output_type"] == "error":
            tracebacks.update(without_colours("\n".join(output["traceback"])).split("\n"))
        elif output["output_type"] == "stream" or list(data) == ["text/plain"]:
            text = "".join(output.get("text", "")) + "".join(data.get("text/plain", ""))
            printed += [line.rsplit("\r", 1)[-1] for line in without_colours(text).split("\n")]
    return printed, tracebacks


def _too_wide(executed: Path, wrapped: list[str]) -> list[str]:
    """Printed lines over 100 characters that utils/printing.py would wrap (a longer word, such as
    a path, is left whole), and any line JupyterLab wrapped (`wrapped`, from the page) that is
    neither such a word nor a traceback's line (which IPython writes)."""
    printed, tracebacks = _printed(executed)
    too_wide = {line for line in printed if wrap_lines(line) != line}
    for text in wrapped:
        lines = text.rstrip("\n").split("\n")
        if all(len(line) <= WIDTH for line in lines):  # then 100 characters no longer fit
            too_wide.add(f"(wrapped in JupyterLab, no line over {WIDTH} characters) {lines[0]}")
        too_wide |= {line for line in lines if wrap_lines(line) != line and line not in tracebacks}
    return sorted(too_wide)


def _unfinished_bars(executed: Path) -> list[str]:
    """Progress bars whose saved text is not finished ("0%| | 0/224" above a finished log, as a
    saved notebook showed tqdm's widget before utils/progress.py): every run under `ci` ends."""
    nb = json.loads(executed.read_text(encoding="utf-8"))
    texts = [
        "".join(output.get("data", {}).get("text/plain", "")) + "".join(output.get("text", ""))
        for cell in nb["cells"]
        for output in cell.get("outputs", [])
    ]
    bars = [m for text in texts for m in re.finditer(r"\| *(\d+)/(\d+) \[", text)]
    return [m.group(0) for m in bars if m.group(1) != m.group(2)]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_jupyterlab_shows_every_image_and_figure_without_errors(notebook, lab, browser):
    executed = lab[2] / notebook.relative_to(ROOT)
    _execute(executed, lab[3])
    seen = _look(browser, lab, executed)
    shown = seen["images"] - seen["pending"] - len(seen["broken"])
    assert not seen["broken"], f"images that did not load: {seen['broken']}"
    assert shown == seen["expected_images"], f"{shown} of {seen['expected_images']} images shown"
    assert seen["drawn"] == seen["figures"], f"{seen['drawn']} of {seen['figures']} figures drawn"
    assert seen["tooWide"] == 0, f"{seen['tooWide']} figures wider than their output area"
    too_wide = _too_wide(executed, seen["wrapped"])
    assert not too_wide, (
        f"printed lines over {WIDTH} characters (use print_wrapped): {too_wide[:5]}"
    )
    assert not seen["errors"], f"browser console errors: {seen['errors'][:5]}"
    assert not _unfinished_bars(executed), "progress bars saved as unfinished"
    if seen["offline"]:
        print(f"{notebook.name}: not reachable from this machine: {seen['offline']}")


def test_the_browser_check_sees_a_broken_image_and_broken_figures(lab, browser):
    """The check itself can fail: a notebook with an image that is not one, a figure plotly cannot
    draw, one wider than the page, and printed lines too wide (wrapped by JupyterLab, or not)."""
    import plotly.graph_objects as go

    good = go.Figure(go.Scatter(y=[1, 3, 2])).to_plotly_json()
    wide = go.Figure(go.Scatter(y=[1, 3, 2]), layout={"width": 3000}).to_plotly_json()
    undrawable = {"data": "not a list of traces", "layout": {}}
    nb = nbformat.v4.new_notebook()
    image = nbformat.v4.new_markdown_cell("![not an image](attachment:broken.png)")
    image.attachments = {"broken.png": {"image/png": "bm90IGEgcG5n"}}  # "not a png"
    figures = nbformat.v4.new_code_cell("figures")
    figures.outputs = [
        nbformat.v4.new_output("display_data", data={PLOTLY: json.loads(json.dumps(fig))})
        for fig in (good, wide, undrawable)
    ]
    long_line = " ".join(["word"] * 30)  # 149 characters
    printed = nbformat.v4.new_code_cell("print(long_line)")
    printed.outputs = [nbformat.v4.new_output("stream", name="stdout", text=long_line + "\n")]
    nb.cells = [image, figures, printed]
    from nbformat.sign import NotebookNotary

    NotebookNotary(data_dir=lab[3]["JUPYTER_DATA_DIR"]).sign(nb)
    planted = lab[2] / "notebooks" / "planted.ipynb"
    nbformat.write(nb, planted)
    seen = _look(browser, lab, planted, wait_s=15)
    assert seen["expected_images"] == 1 and seen["broken"] == ["not an image"], seen
    assert seen["figures"] == 3 and seen["drawn"] < 3, seen
    assert seen["tooWide"] >= 1
    assert seen["wrapped"] == [long_line + "\n"], seen["wrapped"]
    assert _too_wide(planted, seen["wrapped"]) == [long_line]
    assert _too_wide(planted, []) == [long_line]  # found in the file too, without the browser
    with_a_path = "/" + "x" * 120 + "\n"  # a word too long for a line: the page wraps it, we don't
    assert _too_wide(planted, [with_a_path]) == [long_line]
    narrow = "x" * WIDTH + "\n"  # if 100 characters stopped fitting, that would be found
    assert _too_wide(planted, [narrow])[0].startswith("(wrapped in JupyterLab, no line over 100")


@pytest.mark.parametrize("setting, drawn", [("embed", 1), ("", 0)])
def test_an_html_export_opened_offline_shows_figures_with_plotly_embedded(
    tmp_path, browser, setting, drawn
):
    """Issue 20: an HTML export loads plotly.js from its CDN, so offline it shows blank gaps;
    with TUTORIAL_PLOTLY=embed (README) the export carries plotly.js and draws its figures. The
    page is opened with every http(s) request refused, as on a machine without a network."""
    from nbconvert import HTMLExporter

    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from utils.configs import configure_plotly\n"
        "configure_plotly()\n"
        "import plotly.graph_objects as go\n"
        "go.Figure(go.Scatter(y=[1, 3, 2])).show()\n"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    saved = os.environ.get("TUTORIAL_PLOTLY")
    os.environ["TUTORIAL_PLOTLY"] = setting
    try:
        notebook_client(nb, timeout=60, kernel_name="python3").execute()
    finally:
        os.environ.pop("TUTORIAL_PLOTLY")
        if saved is not None:
            os.environ["TUTORIAL_PLOTLY"] = saved
    html, _ = HTMLExporter().from_notebook_node(nb)
    (tmp_path / "export.html").write_text(html, encoding="utf-8")
    page = browser.new_page()
    try:
        page.route("http*://**", lambda route: route.abort())
        page.goto((tmp_path / "export.html").as_uri())
        count = (
            "() => [...document.querySelectorAll('.js-plotly-plot')]"
            ".filter(p => p._fullLayout && p.querySelector('g.trace')).length"
        )
        for _ in range(20):
            if page.evaluate(count) >= drawn and drawn:
                break
            page.wait_for_timeout(250)
        assert page.evaluate(count) == drawn
    finally:
        page.close()
