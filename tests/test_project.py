"""Repository rules: notebooks stored without outputs, generated modules up to date, one dependency
list."""

import base64
import json
import re
import subprocess

import pytest

from utils import export

from utils.export import ROOT  # one definition of the repository root

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ALL_NOTEBOOKS = NOTEBOOKS + sorted((ROOT / "exercises").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [nb.name[:2] for nb in NOTEBOOKS][:3] == ["01", "02", "03"]


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS, ids=lambda p: p.parent.name + "/" + p.name)
def test_notebook_is_stored_without_outputs(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    with_outputs = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not with_outputs, f"{notebook.name}: cells {with_outputs} have outputs; run `make strip`"


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
    import nbclient
    import nbformat
    from nbconvert import HTMLExporter

    monkeypatch.setenv("TUTORIAL_CONFIG", "ci")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(ROOT / "notebooks" / "01_tokenisation.ipynb", as_version=4)
    nbclient.NotebookClient(
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

    assert diagrams.stale() == [], "run `make diagrams`"


@pytest.mark.parametrize("folder", ["notebooks", "exercises"])
def test_diagrams_render_in_the_html_export(folder):
    """Attachments travel inside the notebook, so JupyterLab, Colab, GitHub and the HTML export all
    show them."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ROOT / folder / "02_clean_implementation.ipynb", as_version=4)
    html, _ = HTMLExporter().from_notebook_node(nb)
    images = re.findall(r"src=[\"']data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html)
    assert len(images) == 3 and all(base64.b64decode(data).startswith(b"<svg") for data in images)


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
