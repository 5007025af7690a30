"""Exercise notebooks: generated from the solutions, stop at the first stub, and hold the solution
notebook's code once the solutions are pasted in (so nbval's run of notebooks/ runs them too)."""

import ast
import copy
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest
from notebook_runner import notebook_client
from terminal_text import without_colours
from nbval.plugin import find_metadata_tags

from utils import exercises

from utils.export import ROOT  # one definition of the repository root

EXERCISE_NOTEBOOKS = sorted((ROOT / "exercises").glob("*.ipynb"))


def _load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _stub_hints(nb):
    """The message of every `raise NotImplementedError("...")` in the exercise cells, in order."""
    hints = []
    for cell in nb["cells"]:
        if "exercise" in cell["metadata"].get("tags", []):
            for node in ast.walk(ast.parse(exercises.cell_source(cell))):
                if isinstance(node, ast.Raise) and getattr(node.exc, "func", None) is not None:
                    if getattr(node.exc.func, "id", "") == "NotImplementedError":
                        hints.append(node.exc.args[0].value)
    return hints


def test_every_solution_notebook_has_an_exercise_version():
    assert [p.name for p in EXERCISE_NOTEBOOKS] == [
        p.name for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
    ]


def test_exercises_are_up_to_date():
    assert exercises.stale_exercises() == [], "run `make exercises`"


@pytest.mark.parametrize("notebook", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_notebook_has_cards_hints_and_solutions(notebook):
    nb = _load(notebook)
    n_exercises = sum("exercise" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert n_exercises >= 3
    text = "\n".join(exercises.cell_source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert (
        len(
            re.findall(
                r"> \*\*Exercise: `\w+`.*\*\* · difficulty [🔴⚪]{5} · importance [🔵⚪]{5} · "
                r"about [\d-]+ minutes",
                text,
            )
        )
        == n_exercises
    )
    assert (
        text.count("<summary>Hint</summary>")
        == n_exercises
        == text.count("<summary>Solution</summary>")
    )
    code = "\n".join(exercises.cell_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    assert "# SOLUTION:" not in code and "# END SOLUTION" not in code and "#| exercise" not in code
    assert not [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("outputs")]


def test_stub_marker_errors_are_clear():
    with pytest.raises(ValueError, match="not closed"):
        exercises.stub_blocks("x = 1\n# SOLUTION: do it\ny = 2", "demo")
    with pytest.raises(ValueError, match="needs a one-line hint"):
        exercises.stub_blocks("# SOLUTION:\ny = 2\n# END SOLUTION", "demo")
    with pytest.raises(ValueError, match="without a"):
        exercises.stub_blocks("y = 2\n# END SOLUTION", "demo")
    stub, hints = exercises.stub_blocks(
        "def f(x):\n    '''doc'''\n    # SOLUTION: return twice x\n    return 2 * x\n"
        "    # END SOLUTION",
        "demo",
    )
    assert stub == (
        "def f(x):\n    '''doc'''\n    # TODO: your code in place of this raise\n"
        '    raise NotImplementedError("return twice x")'
    )
    long_hint = "the rows of W_pos for positions 0..posn-1, " * 4 + '"quoted"'
    code = f"def f():\n    # SOLUTION: {long_hint}\n    pass\n    # END SOLUTION"
    long_stub, _ = exercises.stub_blocks(code)
    assert max(map(len, long_stub.splitlines())) <= 100  # read in full, without scrolling sideways
    assert ast.parse(long_stub).body[0].body[0].exc.args[0].value == long_hint  # joined: whole
    assert hints == ["return twice x"]


def test_make_exercises_removes_what_a_killed_run_left(tmp_path):
    exercises.write_exercises(tmp_path)
    gone = tmp_path / ".01_tokenisation.ipynb.4194999.tmp"  # no such process
    old = tmp_path / f".02_clean_implementation.ipynb.{os.getppid()}.tmp"  # pid reused since
    writing = tmp_path / f".03_training.ipynb.{os.getpid()}.tmp"  # a write in progress
    for path in (gone, old, writing):
        path.write_text("{")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    exercises.write_exercises(tmp_path)
    assert not gone.exists() and not old.exists() and writing.exists()


def test_make_exercises_keeps_a_learners_edits(tmp_path):
    assert any("wrote" in m for m in exercises.write_exercises(tmp_path))
    path = tmp_path / "02_clean_implementation.ipynb"
    nb = _load(path)
    nb["cells"][5]["source"] = "my own work"
    path.write_text(json.dumps(nb))
    (tmp_path / "01_tokenisation.ipynb").write_text(
        (tmp_path / "01_tokenisation.ipynb").read_text().replace("Exercise", "Exercize", 1)
    )
    messages = exercises.write_exercises(tmp_path)
    backups = sorted((tmp_path / "backup").glob("*.ipynb"))
    assert len(backups) == 2 and any("kept your edited" in m for m in messages)
    assert any("my own work" in b.read_text() for b in backups)
    assert exercises.write_exercises(tmp_path) == []  # now pristine: nothing to do
    assert exercises.stale_exercises(tmp_path) == []


def _run_a_cell(nb):
    """What a learner's notebook looks like after running its first code cell and saving: outputs, a
    count, kernel metadata."""
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": ["my run, 37 minutes of training\n"]}
    ]
    cell["execution_count"] = 1
    nb["metadata"]["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def test_make_exercises_backs_up_a_notebook_whose_own_metadata_differs(tmp_path):
    """The learner's code is the same but their notebook's metadata differs: kept all the same,
    in a backup, before the notebook is written again."""
    exercises.write_exercises(tmp_path)
    path = tmp_path / "03_training.ipynb"
    nb = _load(path)
    nb["metadata"]["my_notes"] = "tried lr=3e-4 first"
    path.write_text(json.dumps(nb, indent=1))
    before = path.read_bytes()
    assert not exercises.learner_edited(path)  # same sources as generated: not a learner's code
    (tmp_path / "02_clean_implementation.ipynb").unlink()  # one to write anew: no backup needed
    messages = exercises.write_exercises(tmp_path)
    (backup,) = (tmp_path / "backup").glob("03_training.*.ipynb")
    assert backup.read_bytes() == before
    assert f"kept a copy of the previous {path} as {backup}" in messages
    assert f"wrote {path}" in messages
    assert len(list((tmp_path / "backup").iterdir())) == 1
    assert exercises.stale_exercises(tmp_path) == []


@pytest.mark.parametrize("change", ["outputs", "formatting", "a JupyterLab save"])
def test_a_notebook_that_differs_only_in_outputs_or_layout_is_not_stale(tmp_path, change):
    """Issue 20: outputs of a run, another JSON layout, or what JupyterLab fills in on a save (the
    kernel's metadata, attachments split into lines) leave the cells as generated: not stale, and
    `make exercises` leaves the file as it is."""
    exercises.write_exercises(tmp_path)
    path = tmp_path / "02_clean_implementation.ipynb"
    nb = _load(path)
    if change == "outputs":
        nb = _run_a_cell(nb)
    elif change == "a JupyterLab save":
        nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
        for cell in nb["cells"]:
            for bundle in cell.get("attachments", {}).values():
                for mime, data in bundle.items():
                    bundle[mime] = "\n".join(data[i : i + 76] for i in range(0, len(data), 76))
        assert any(cell.get("attachments") for cell in nb["cells"])
    path.write_text(json.dumps(nb, indent=2 if change == "formatting" else 1))
    before = path.read_bytes()
    assert exercises.stale_exercises(tmp_path) == []
    assert "wrote" not in " ".join(exercises.write_exercises(tmp_path))
    assert path.read_bytes() == before and not (tmp_path / "backup").exists()


def test_exercises_are_not_stale_after_a_jupyterlab_save_of_their_solution(tmp_path, monkeypatch):
    """A solution notebook saved by JupyterLab (kernel metadata) generates the same exercises."""
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    for solution in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = _load(solution)
        nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        (repo / "notebooks" / solution.name).write_text(json.dumps(nb, indent=1))
    monkeypatch.setattr(exercises, "ROOT", repo)
    monkeypatch.setattr(exercises, "NOTEBOOKS", repo / "notebooks")
    shutil.copytree(ROOT / "exercises", repo / "exercises", ignore=shutil.ignore_patterns("backup"))
    assert exercises.stale_exercises(repo / "exercises") == []
    nb = _load(repo / "notebooks" / "03_training.ipynb")  # a real change is still seen
    nb["cells"][0]["source"] = "# 03 · another title\n"
    (repo / "notebooks" / "03_training.ipynb").write_text(json.dumps(nb, indent=1))
    assert exercises.stale_exercises(repo / "exercises") == ["exercises/03_training.ipynb"]


def test_backups_made_at_the_same_moment_never_overwrite_each_other(tmp_path, monkeypatch):
    monkeypatch.setattr(
        exercises, "_backup_stamp", lambda: "20250101-120000-000000"
    )  # a clock that does not move
    exercises.write_exercises(tmp_path)
    path = tmp_path / "02_clean_implementation.ipynb"
    versions = []
    for attempt in range(3):
        nb = _load(path)
        nb["cells"][5]["source"] = f"my work, attempt {attempt}"
        path.write_text(json.dumps(nb))
        versions.append(path.read_bytes())
        messages = exercises.write_exercises(tmp_path)
        assert any(m.startswith(f"kept your edited {path} as ") for m in messages), messages
    backups = {b.name: b.read_bytes() for b in (tmp_path / "backup").iterdir()}
    assert backups == {
        "02_clean_implementation.20250101-120000-000000.ipynb": versions[0],
        "02_clean_implementation.20250101-120000-000000-1.ipynb": versions[1],
        "02_clean_implementation.20250101-120000-000000-2.ipynb": versions[2],
    }


def test_a_notebook_that_is_no_longer_valid_json_is_backed_up_too(tmp_path):
    exercises.write_exercises(tmp_path)
    path = tmp_path / "01_tokenisation.ipynb"
    path.write_text(path.read_text()[:5000])  # an editor that crashed mid-save
    damaged = path.read_bytes()
    messages = exercises.write_exercises(tmp_path)
    (backup,) = (tmp_path / "backup").iterdir()
    assert backup.read_bytes() == damaged
    assert f"kept your edited {path} as {backup}" in messages


def _run_until_error(nb_dict):
    nb = nbformat.reads(json.dumps(nb_dict), as_version=4)
    client = notebook_client(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "exercises")}},
    )
    with pytest.raises(nbclient.exceptions.CellExecutionError) as info:
        client.execute()
    failed = next(
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.outputs)
    )
    return info.value, failed


@pytest.mark.parametrize("notebook", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_notebook_stops_at_the_first_stub_with_its_hint(notebook, monkeypatch):
    monkeypatch.setenv("TUTORIAL_CONFIG", "ci")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = _load(notebook)
    first_exercise = next(
        i for i, c in enumerate(nb["cells"]) if "exercise" in c["metadata"].get("tags", [])
    )
    error, failed = _run_until_error(nb)
    assert error.ename == "NotImplementedError"
    assert error.evalue == _stub_hints(nb)[0]
    assert first_exercise <= failed <= first_exercise + 3, (
        "it should stop at the first exercise's own cell or its check"
    )


def _code(cell, without_exercise_lines=False):
    """A code cell's code, its leading `#|` directive lines stripped (the generator strips them) and
    its leading and trailing blank lines left out. `without_exercise_lines`: also without the
    `#| exercise` and `#| hint:` directives and the `# SOLUTION:` and `# END SOLUTION` marker lines
    (all comments, which change nothing that runs), as a solution cell is once it is pasted into
    its exercise cell."""
    lines = exercises.cell_source(cell).splitlines()
    n = next((i for i, line in enumerate(lines) if not line.startswith("#|")), len(lines))
    directives, body = [line.strip() for line in lines[:n]], lines[n:]
    if without_exercise_lines:
        directives = [
            line
            for line in directives
            if not line.startswith((exercises.EXERCISE_MARK, exercises.HINT_MARK))
        ]
        body = [
            line for line in body if not line.strip().startswith((exercises.BEGIN, exercises.END))
        ]
    return "\n".join(directives + body).strip("\n")


def _differences_from_the_solution(exercise_nb, solution_nb):
    """Where the exercise notebook, with every folded solution pasted into its exercise cell, would
    run other code than nbval runs for the solution notebook: code cells compared one by one, in
    order, with the cell tags nbval reads (nbval-skip, raises-exception, ...). Markdown cells (the
    cards, hints and solutions) do not run. [] means nbval's run of the solution notebook is also a
    run of the filled exercise notebook: both find the repository root from their folder, a sibling
    of the other's."""
    filled = exercises.fill_in_solutions(exercise_nb)
    ran = [c for c in filled["cells"] if c["cell_type"] == "code"]
    solution = [c for c in solution_nb["cells"] if c["cell_type"] == "code"]
    problems = []
    if len(ran) != len(solution):
        problems.append(f"{len(ran)} code cells, but the solution notebook has {len(solution)}")
    for number, (mine, theirs) in enumerate(zip(ran, solution), 1):
        expected = _code(theirs, without_exercise_lines=True)
        if _code(mine) != expected:
            diff = difflib.unified_diff(
                expected.splitlines(),
                _code(mine).splitlines(),
                "solution",
                "exercise, solutions pasted in",
                lineterm="",
                n=1,
            )
            problems.append(f"code cell {number} differs:\n" + "\n".join(list(diff)[:30]))
        tags = [dict(find_metadata_tags(c.get("metadata", {}))) for c in (mine, theirs)]
        if tags[0] != tags[1]:
            problems.append(f"code cell {number}: nbval options {tags[0]}, solution {tags[1]}")
    return problems


@pytest.mark.parametrize("notebook", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_notebook_with_solutions_pasted_in_runs_what_nbval_runs(notebook):
    """With its solutions pasted in, the exercise notebook is the solution notebook's code, cell by
    cell: `make test`'s nbval run of notebooks/ runs it, without executing it a second time."""
    filled = exercises.fill_in_solutions(_load(notebook))
    assert "NotImplementedError" not in json.dumps(
        [c["source"] for c in filled["cells"] if c["cell_type"] == "code"]
    )
    problems = _differences_from_the_solution(
        _load(notebook), _load(ROOT / "notebooks" / notebook.name)
    )
    assert not problems, "\n".join(problems) + "\n(run `make exercises`?)"


def test_pasted_in_solutions_that_differ_from_the_solution_notebook_are_caught():
    """The comparison above fails on any change to the code that runs: a folded solution, a copied
    code cell, a cell too many, or an nbval tag."""
    solution = _load(ROOT / "notebooks" / "02_clean_implementation.ipynb")
    generated = exercises.exercise_notebook(ROOT / "notebooks" / "02_clean_implementation.ipynb")
    assert _differences_from_the_solution(generated, solution) == []
    folded = next(
        i
        for i, c in enumerate(generated["cells"])
        if "<summary>Solution</summary>" in exercises.cell_source(c)
    )
    copied = next(
        i
        for i, c in enumerate(generated["cells"])
        if c["cell_type"] == "code" and "exercise" not in c["metadata"].get("tags", [])
    )
    changes = {
        "a solution": lambda nb: nb["cells"][folded].update(
            source=exercises.cell_source(nb["cells"][folded]).replace("\n```\n", "\nx = 1\n```\n")
        ),
        "a copied cell": lambda nb: nb["cells"][copied].update(
            source=exercises.cell_source(nb["cells"][copied]) + "\nimport this"
        ),
        "a cell too many": lambda nb: nb["cells"].append(dict(nb["cells"][copied], source="pass")),
        "an nbval tag": lambda nb: nb["cells"][copied]["metadata"].update(tags=["nbval-skip"]),
    }
    for change, apply in changes.items():
        changed = copy.deepcopy(generated)
        apply(changed)
        assert _differences_from_the_solution(changed, solution), change


def test_make_check_reports_each_exercise_of_a_learners_notebook(tmp_path):
    """One exercise solved, one with a classic bug, the rest stubs: `make check` passes, diagnoses
    and flags each."""
    nb = _load(ROOT / "exercises" / "02_clean_implementation.ipynb")
    filled = exercises.fill_in_solutions(nb)
    for i, cell in enumerate(nb["cells"]):
        source = exercises.cell_source(cell)
        if source.startswith("#| export\nclass LayerNorm"):
            nb["cells"][i] = filled["cells"][i]
        if source.startswith("#| export\nclass Embed"):
            nb["cells"][i] = {
                **filled["cells"][i],
                "source": filled["cells"][i]["source"].replace(
                    "self.W_pos[:seq_len]", "self.W_pos[1:seq_len + 1]"
                ),
            }
    path = tmp_path / "my_02.ipynb"
    path.write_text(json.dumps(nb))
    result = subprocess.run(
        ["make", "-s", "check", f"NOTEBOOK={path}"], cwd=ROOT, capture_output=True, text=True
    )
    out = result.stdout
    assert result.returncode != 0
    assert (
        "my_02::LayerNorm] PASSED" in out
        and "my_02::Embed] PASSED" in out
        and "6 failed, 2 passed" in out
    )
    assert "Likely cause: PosEmbed: positions are offset by one" in out
    assert "Attention raised NotImplementedError" in out


def test_make_check_without_a_notebook_says_how():
    result = subprocess.run(["make", "-s", "check"], cwd=ROOT, capture_output=True, text=True)
    assert (
        result.returncode != 0
        and "usage: make check NOTEBOOK=exercises/" in result.stdout + result.stderr
    )


def test_notebook_03_trains_a_learners_own_model(monkeypatch):
    """What notebook 03 tells learners to do: paste their notebook 02 code after the imports cell;
    the rest then uses their model."""
    monkeypatch.setenv("TUTORIAL_CONFIG", "ci")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    own = exercises.fill_in_solutions(_load(ROOT / "exercises" / "02_clean_implementation.ipynb"))
    code = (
        "\n\n".join(exercises.exported_sources(own["cells"]))
        + "\n\nassert DemoTransformer.__module__ == '__main__'"
    )
    nb = _load(ROOT / "exercises" / "03_training.ipynb")
    nb = exercises.fill_in_solutions(nb)
    imports = next(
        i
        for i, c in enumerate(nb["cells"])
        if "from utils.model import Config, DemoTransformer" in exercises.cell_source(c)
    )
    nb["cells"].insert(
        imports + 1,
        {
            "cell_type": "code",
            "id": "learners-model",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": code,
        },
    )
    # a shorter run than the notebook's 400 steps (the learner's explicit model is the slow one):
    # enough to beat the unigram baseline, which the notebook asserts
    run_length_cell = next(
        i
        for i, c in enumerate(nb["cells"])
        if "max_steps, warmup_steps = run_length(" in exercises.cell_source(c)
    )
    shorter = "max_steps, warmup_steps = 120, 30  # the test's shorter run"
    nb["cells"].insert(
        run_length_cell + 1, {**nb["cells"][imports + 1], "id": "short", "source": shorter}
    )
    client = notebook_client(
        nbformat.reads(json.dumps(nb), as_version=4),
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "exercises")}},
    )
    before = {f: f.stat().st_mtime for f in (ROOT / "checkpoints").rglob("*")}
    # raises CellExecutionError if any cell fails,
    # the final loss assert and the checkpoint reload included
    client.execute()
    after = {f: f.stat().st_mtime for f in (ROOT / "checkpoints").rglob("*")}
    assert after == before, "the test wrote into the learner's checkpoints/ folder"
    assert any(Path(os.environ["TUTORIAL_CHECKPOINTS"]).rglob("step_*.pt")), (
        "checkpoints go to TUTORIAL_CHECKPOINTS"
    )
    printed = "".join(
        out.get("text", "") for cell in client.nb.cells for out in cell.get("outputs", [])
    )
    assert (
        "training your DemoTransformer, as you wrote it" in printed
    )  # not the reference's fused twin


@pytest.mark.parametrize(
    "notebook", sorted((ROOT / "exercises").glob("*.ipynb")), ids=lambda p: p.name
)
def test_each_stub_says_what_to_write_within_the_editor_width(notebook):
    """Each stub is a TODO line and a raise whose message is the whole hint, in lines of at most 100
    characters (JupyterLab shows about 105 at a 1400-pixel window: nothing is cut off)."""
    nb = _load(notebook)
    for cell in nb["cells"]:
        if "exercise" in cell["metadata"].get("tags", []):
            lines = exercises.cell_source(cell).splitlines()
            assert max(map(len, lines)) <= 100, f"{notebook.name}: a line over 100 characters"
            raises = [i for i, line in enumerate(lines) if "raise NotImplementedError(" in line]
            assert raises and all(lines[i - 1].strip().startswith("# TODO:") for i in raises)
    assert _stub_hints(nb) and all(len(hint) > 10 for hint in _stub_hints(nb))


def test_a_failing_check_in_jupyter_shows_the_message_not_the_checks_internals():
    """In a notebook, a stub's error shows the learner's cell and stub line, and a failed check its
    message: no torch or checks frames."""
    cells = [
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\nfrom utils import checks\n"
        "from utils.model import LayerNorm",
        "class Stub(LayerNorm):\n    def forward(self, residual):\n"
        "        raise NotImplementedError('normalise over d_model')",
        "checks.check_layernorm(Stub)",
        "class Wrong(LayerNorm):\n    def forward(self, residual):\n"
        "        return (residual - residual.mean(-1)) * self.w",
        "checks.check_layernorm(Wrong)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook_client(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    for index, expected in (
        (2, "NotImplementedError: normalise over d_model"),
        (4, "In your code: forward, line 3"),
    ):
        (error,) = [out for out in nb.cells[index].outputs if out.output_type == "error"]
        text = without_colours("\n".join(error.traceback))
        assert (
            expected in text and "torch/nn/modules" not in text and len(text.splitlines()) <= 20
        ), text


def _make_check_in_process(notebook, monkeypatch, capsys):
    """(exit status, output) of what `make check NOTEBOOK=notebook` runs (pytest -p no:cacheprovider
    -v tests/test_notebook_checks.py, NOTEBOOK set), but by pytest.main in this process: no second
    Python, torch and pytest to start. The command line itself is tested by
    test_make_check_reports_each_exercise_of_a_learners_notebook."""
    monkeypatch.setenv("NOTEBOOK", str(Path(notebook).resolve()))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    # tests/conftest.py sets it once per process; should it run again, this run's value comes back
    monkeypatch.setenv("TUTORIAL_CHECKPOINTS", os.environ["TUTORIAL_CHECKPOINTS"])
    # test_notebook_checks reads NOTEBOOK when imported: this run imports it afresh
    monkeypatch.delitem(sys.modules, "test_notebook_checks", raising=False)
    before = set(sys.modules)
    capsys.readouterr()
    try:
        status = pytest.main(
            [
                "-p",
                "no:cacheprovider",
                "-v",
                f"--rootdir={ROOT}",
                str(ROOT / "tests" / "test_notebook_checks.py"),
            ]
        )
    finally:
        for name in set(sys.modules) - before:  # this run's test module and the notebook's code
            if name == "test_notebook_checks" or name.startswith("learner_"):
                del sys.modules[name]
    out = capsys.readouterr()
    return status, out.out + out.err


def test_make_check_explains_a_syntax_error_a_helper_outside_export_and_a_lost_export_line(
    tmp_path, monkeypatch, capsys
):
    """Each gets one clear line that names the cell, instead of a collection error, a bare NameError
    or a silently missing test."""
    filled = exercises.fill_in_solutions(
        _load(ROOT / "exercises" / "02_clean_implementation.ipynb")
    )
    cells = filled["cells"]
    index = {
        name: next(
            i
            for i, c in enumerate(cells)
            if c["cell_type"] == "code"
            and f"\n{name}(" in exercises.cell_source(c)
            and exercises.cell_source(c).startswith("#| export")
        )
        for name in ("class MLP", "class Unembed", "class LayerNorm")
    }
    broken = json.loads(json.dumps(filled))
    broken["cells"][index["class MLP"]]["source"] = exercises.cell_source(
        cells[index["class MLP"]]
    ).replace("return ", "return (", 1)
    lost = json.loads(json.dumps(filled))
    lost["cells"][index["class Unembed"]]["source"] = exercises.cell_source(
        cells[index["class Unembed"]]
    ).replace("#| export\n", "", 1)
    helper = json.loads(json.dumps(filled))
    src = exercises.cell_source(cells[index["class LayerNorm"]])
    # my_scale() would be defined in a cell without '#| export', which make check does not run
    helper["cells"][index["class LayerNorm"]]["source"] = src.replace(
        "class LayerNorm", "SCALE = my_scale()\n\n\nclass LayerNorm", 1
    )
    outputs = {}
    for name, nb in (("syntax", broken), ("lost", lost), ("helper", helper)):
        path = tmp_path / f"{name}.ipynb"
        path.write_text(json.dumps(nb))
        status, outputs[name] = _make_check_in_process(path, monkeypatch, capsys)
        assert (
            status != 0
            and "Traceback" not in outputs[name]
            and "ERROR collecting" not in outputs[name]
        ), outputs[name]
    assert re.search(
        r"code cell \d+ has a SyntaxError on its line \d+: '\(' was never closed", outputs["syntax"]
    )
    assert re.search(
        r"Unembed is defined in code cell \d+, which has no '#\| export' line", outputs["lost"]
    )
    assert (
        "NameError: name 'my_scale' is not defined" in outputs["helper"]
        and "mark that cell '#| export' too" in outputs["helper"]
    )
