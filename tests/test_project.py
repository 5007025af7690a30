"""Repository rules: notebooks stored without outputs, generated modules up to date, one dependency
list."""

import base64
import json
import os
import re
import subprocess
import sys

import pytest

from utils import export

from utils.export import ROOT  # one definition of the repository root

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ALL_NOTEBOOKS = NOTEBOOKS + sorted((ROOT / "exercises").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [nb.name[:2] for nb in NOTEBOOKS][:4] == ["00", "01", "02", "03"]


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS, ids=lambda p: p.parent.name + "/" + p.name)
def test_notebook_is_stored_without_outputs(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    with_outputs = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    fix = "make strip" if notebook.parent.name == "notebooks" else "make exercises"
    assert not with_outputs, f"{notebook.name}: cells {with_outputs} have outputs; run `{fix}`"


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS, ids=lambda p: p.parent.name + "/" + p.name)
def test_notebook_first_code_cell_is_the_shared_setup(notebook):
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    first = "".join(cells[0]["source"])
    assert "google.colab" in first and "setup_notebook(" in first and "sys.path.insert" in first


def test_generated_modules_match_their_notebooks():
    assert export.stale_modules() == [], "run `make export`"


def test_export_detects_drift(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "module_path", lambda module: tmp_path / f"{module}.py")
    assert export.stale_modules()  # nothing written to tmp_path yet
    export.export_all()
    assert export.stale_modules() == []
    path = tmp_path / "model.py"
    path.write_text(path.read_text().replace("unbiased=False", "unbiased=True"))
    assert export.stale_modules() == ["utils/model.py (from 02_clean_implementation.ipynb)"]


def test_export_backs_up_a_hand_edit_before_writing_over_it(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "module_path", lambda module: tmp_path / f"{module}.py")
    export.export_all()
    path = tmp_path / "model.py"
    written = path.read_text()
    path.write_text(export.signed("# what an older notebook generated\n"))
    assert not any("kept" in message for message in export.export_all())  # no edit, no backup
    assert path.read_text() == written
    edited = written.replace("unbiased=False", "unbiased=True")
    path.write_text(edited)
    messages = export.export_all()
    backups = list((tmp_path / "backup").glob("model.*.py"))
    assert len(backups) == 1 and backups[0].read_text() == edited
    assert any(f"kept your edit of {path} as {backups[0]}" in m for m in messages)
    assert path.read_text() == written
    # a second edit within the same second: both backups kept, none written over
    monkeypatch.setattr(export.time, "strftime", lambda fmt: "20260101-000000")
    for edit in ("# edit one", "# edit two"):
        path.write_text(edited + edit + "\n")
        export.export_all()
    kept = sorted(p.read_text() for p in (tmp_path / "backup").glob("model.20260101-000000*.py"))
    assert kept == [edited + "# edit one\n", edited + "# edit two\n"]


def _requirements(lines):
    return sorted(
        re.sub(r"\s+", "", line)
        for line in lines
        if line.strip() and not line.strip().startswith("#")
    )


def test_requirements_and_environment_list_the_same_packages():
    reqs = _requirements((ROOT / "requirements.txt").read_text().splitlines())
    env_text = (ROOT / "environment.yml").read_text()
    pip_section = env_text.split("- pip:", 1)[1]
    env = _requirements(
        line.strip()[2:] for line in pip_section.splitlines() if line.strip().startswith("- ")
    )
    assert reqs == env


def test_make_test_keeps_kernel_files_out_of_the_home_folder():
    """Each kernel nbval or a test starts writes IPython's history (~/.ipython) and a connection
    file (~/.local/share/jupyter/runtime) unless told where: `make test` points both at its
    temporary folder."""
    dry_run = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True)
    commands = dry_run.stdout.replace("\\\n", " ").splitlines()  # continued lines joined
    pytest_lines = [line for line in commands if "-m pytest" in line]
    assert pytest_lines and all(
        line.index("export IPYTHONDIR=$tmp/") < line.index("-m pytest")
        and "JUPYTER_RUNTIME_DIR=$tmp/" in line
        for line in pytest_lines
    ), dry_run.stdout


def test_the_tests_kernels_listen_on_socket_files_not_tcp_ports():
    """A kernel on TCP can die at its start when another process takes one of its ports first
    (it did once in CI, beside JupyterLab's kernels in test_browser): the tests run notebooks
    through tests/notebook_runner.py, whose kernels use socket files, and nowhere else."""
    import nbformat
    from notebook_runner import notebook_client

    code = "from ipykernel.connect import get_connection_info\nget_connection_info(unpack=True)"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    notebook_client(nb, timeout=60, kernel_name="python3").execute()
    shown = nb.cells[0].outputs[0]["data"]["text/plain"]
    assert "'transport': 'ipc'" in shown and "'shell_port': 1" in shown, shown
    needle = "Notebook" + "Client("  # written in two, so that this line does not match
    direct = [
        f"{path.name}:{number}"
        for path in sorted((ROOT / "tests").glob("*.py"))
        if path.name != "notebook_runner.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if needle in line
    ]
    assert not direct, (
        f"notebooks run on TCP kernels (use notebook_runner.notebook_client): {direct}"
    )
    browser_test = (ROOT / "tests" / "test_browser.py").read_text()
    assert '"--KernelManager.transport=ipc"' in browser_test


def test_the_tests_helper_modules_hide_no_installed_module():
    """tests/ is on sys.path while the tests run, so a helper module there named as an installed
    package hides it from every import (a tests/kernels.py once hid the `kernels` package that
    transformers imports: 253 tests failed in CI)."""
    import importlib.machinery
    from pathlib import Path

    tests = ROOT / "tests"
    others = [p for p in sys.path if Path(p or ".").resolve() != tests]
    helpers = [p.stem for p in tests.glob("*.py") if not p.stem.startswith(("test_", "conftest"))]
    hidden = {
        name: spec.origin
        for name in helpers
        if (spec := importlib.machinery.PathFinder.find_spec(name, others)) is not None
    }
    assert helpers and not hidden, f"tests/ modules named as installed ones: {hidden}"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS, ids=lambda p: p.parent.name + "/" + p.name)
def test_notebooks_only_mention_notebooks_that_exist(notebook):
    text = "".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
    existing = {nb.name[:2] for nb in NOTEBOOKS}
    missing = sorted(set(re.findall(r"[Nn]otebooks? (0\d)", text)) - existing)
    assert not missing, f"{notebook.name} refers to notebook(s) {missing}, which do not exist yet"


def test_figures_survive_the_html_export(tmp_path, monkeypatch):
    """Executed notebooks keep an HTML copy of each plotly figure, so nbconvert's HTML export (and
    viewers other than JupyterLab) show it; JupyterLab's own output type alone would leave the
    export without figures."""
    import nbformat
    from notebook_runner import notebook_client
    from nbconvert import HTMLExporter

    monkeypatch.setenv("TUTORIAL_CONFIG", "ci")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(ROOT / "notebooks" / "01_tokenisation.ipynb", as_version=4)
    notebook_client(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    figures = sum(
        "application/vnd.plotly.v1+json" in out.get("data", {})
        for cell in nb.cells
        for out in cell.get("outputs", [])
    )
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert figures >= 1 and html.count('class="plotly-graph-div"') == figures


def test_diagrams_are_drawn_into_notebook_02():
    from utils import diagrams

    assert diagrams.problems() == {}, "run `make diagrams`"


def test_the_diagram_check_needs_no_rasteriser(monkeypatch):
    """`make test` (and a learner's `make lab`) install no rasteriser: only `make diagrams` does."""
    import sys

    from utils import diagrams

    monkeypatch.setitem(sys.modules, "resvg_py", None)  # any import of it now fails
    assert diagrams.stale() == []
    with pytest.raises(SystemExit, match="make diagrams"):
        diagrams.rasterise(diagrams.mlp())


def _save_as_jupyterlab_would(source, target):
    """What opening notebook 02 in JupyterLab and saving it may change: the file re-serialised by
    nbformat, the kernel's metadata filled in, each attachment's base64 text split into lines."""
    import nbformat

    nb = nbformat.read(source, as_version=4)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                 "name": "python3"}  # fmt: skip
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7", "mimetype":
                                    "text/x-python", "file_extension": ".py"}  # fmt: skip
    for cell in nb.cells:
        for bundle in cell.get("attachments", {}).values():
            for mime, data in bundle.items():
                bundle[mime] = "\n".join(data[i : i + 76] for i in range(0, len(data), 76))
    nbformat.write(nb, target)
    assert target.read_bytes() != source.read_bytes()


def test_the_diagram_check_survives_a_jupyterlab_save(tmp_path):
    from utils import diagrams

    saved = tmp_path / "02_clean_implementation.ipynb"
    _save_as_jupyterlab_would(ROOT / "notebooks" / saved.name, saved)
    assert diagrams.stale(saved) == [], diagrams.problems(saved)


def test_the_diagram_check_fails_when_a_drawing_changes(tmp_path, monkeypatch):
    from utils import diagrams

    saved = tmp_path / "02_clean_implementation.ipynb"
    _save_as_jupyterlab_would(ROOT / "notebooks" / saved.name, saved)
    assert diagrams.stale(saved) == []
    mlp = diagrams.DIAGRAMS["mlp.png"]
    monkeypatch.setitem(diagrams.DIAGRAMS, "mlp.png", lambda: mlp().replace("4 x", "3 x"))
    assert diagrams.problems(saved) == {"mlp.png": "drawn from another version of the drawing"}


@pytest.mark.parametrize("folder", ["notebooks", "exercises"])
def test_diagrams_render_in_the_html_export(folder):
    """PNG attachments travel inside the notebook, so JupyterLab, Colab, GitHub, VS Code and the
    HTML export all show them (JupyterLab 4 shows only the alt text of an SVG attachment)."""
    import struct

    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ROOT / folder / "02_clean_implementation.ipynb", as_version=4)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert 'src="attachment:' not in html  # every attachment resolved
    images = re.findall(r"<img [^>]*src=[\"']data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(images) == 3
    for data in images:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
        width, height = struct.unpack(">II", png[16:24])
        assert 1000 <= width <= 2000 and 500 <= height <= 2000  # 2x drawings of 720-790 pixels
    # each shown no wider than it is drawn: a div of the drawing's width (half the PNG's)
    assert len(re.findall(r'<div style="max-width: (?:760|790|720)px">\s*<p><img ', html)) == 3


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_default_exp_sits_in_the_first_export_cell(notebook):
    cells = [
        "".join(c["source"])
        for c in json.loads(notebook.read_text())["cells"]
        if c["cell_type"] == "code"
    ]
    with_exp = [i for i, c in enumerate(cells) if "#| default_exp" in c]
    first_export = next(
        i
        for i, c in enumerate(cells)
        if "#| export" in c.split("\n", 2)[:2] or c.startswith("#| export")
    )
    assert with_exp == [first_export], (
        f"{notebook.name}: put '#| default_exp' in the first '#| export' cell"
    )


def test_the_setup_cell_says_in_one_line_when_colabs_clone_fails(tmp_path, monkeypatch):
    """Issue 20: in Colab, a failed `git clone` gave subprocess's CalledProcessError traceback.
    Here a fake `git` fails as a clone without a network does; the cell's error is one line that
    says what failed and what to do."""
    import types

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "git").write_text(
        "#!/bin/sh\necho \"Cloning into 'gpt2-from-scratch'...\" >&2\n"
        "echo 'fatal: unable to access the repository: Could not resolve host' >&2\nexit 128\n"
    )
    (fake_bin / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.chdir(tmp_path)
    cells = json.loads(ALL_NOTEBOOKS[0].read_text())["cells"]
    setup = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    with pytest.raises(RuntimeError) as raised:
        exec(compile(setup, "setup cell", "exec"), {})
    message = str(raised.value)
    assert "\n" not in message and "git clone" in message and "Could not resolve host" in message
    assert "run this cell again" in message
    assert "transformers>=5.0" in setup  # Colab's own transformers may be older than ours


def test_the_readme_counts_what_there_is():
    """The README's numbers of exercises and of known mistakes are those of the notebooks and the
    checks (a number in a sentence drifts when an exercise or a mistake is added)."""
    from utils.checks import MISTAKES

    readme = " ".join((ROOT / "README.md").read_text().split())
    exercises = {
        path.name[:2]: sum(
            any(line.startswith("#| exercise") for line in "".join(cell["source"]).splitlines())
            for cell in json.loads(path.read_text())["cells"]
        )
        for path in NOTEBOOKS
    }
    said = re.search(r"\*\*Exercises\*\* \((\d+) in all, (\d+) of them in notebook 00\)", readme)
    assert said, "the README no longer says how many exercises there are"
    assert (int(said[1]), int(said[2])) == (sum(exercises.values()), exercises["00"])
    said = re.search(r"\((\d+) known mistakes", readme)
    assert said, "the README no longer says how many mistakes the checks know"
    assert int(said[1]) == len(MISTAKES)
