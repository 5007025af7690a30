"""The checks as unit tests, run against the code written in a notebook.

    make check NOTEBOOK=exercises/02_clean_implementation.ipynb

runs the notebook's definition cells (its `#| export` cells, where the exercises are) in a fresh
module, then one test per class or function that has a check in utils/checks/ (CHECKS). A learner
working in an editor sees which exercises pass. Without NOTEBOOK (as in `make test`), it runs
against the solution notebooks, which must pass every check.
"""

import json
import os
from pathlib import Path

import pytest

from utils import exercises
from utils.checks import CHECKS

from utils.export import ROOT  # one definition of the repository root

NOTEBOOKS = (
    [Path(os.environ["NOTEBOOK"])]
    if os.environ.get("NOTEBOOK")
    else sorted((ROOT / "notebooks").glob("*.ipynb"))
)


def _cases():
    for notebook in NOTEBOOKS:
        if not notebook.exists():
            raise FileNotFoundError(
                f"NOTEBOOK={notebook}: no such file; e.g. "
                "NOTEBOOK=exercises/02_clean_implementation.ipynb"
            )
        nb = json.loads(notebook.read_text(encoding="utf-8"))
        problems = exercises.cell_problems(nb, set(CHECKS))
        for (
            where,
            problem,
        ) in (
            problems.items()
        ):  # one failing test each, with one clear line, instead of a collection error
            yield pytest.param(notebook, where, problem, id=f"{notebook.stem}::{where}")
        if any(where.startswith("code cell") for where in problems):
            continue  # the notebook's code cannot run until its syntax error is fixed
        names = [name for name in exercises.defined_names(nb) if name in CHECKS]
        if os.environ.get("NOTEBOOK") and not names and not problems:
            raise ValueError(
                f"{notebook} defines none of {sorted(CHECKS)}: there is nothing to check"
            )
        for name in names:
            yield pytest.param(notebook, name, None, id=f"{notebook.stem}::{name}")


_loaded = {}


def _module(notebook):
    if notebook not in _loaded:
        try:
            _loaded[notebook] = exercises.load_definitions(notebook)
        except (
            Exception
        ) as err:  # a learner's syntax error or typo: say where, without a deep stack trace
            _loaded[notebook] = err
    if isinstance(_loaded[notebook], Exception):
        err = _loaded[notebook]
        hint = ""
        if isinstance(err, NameError) and err.name:
            hint = (
                f"\n  make check runs only the cells marked '#| export'. If {err.name} is defined "
                "in another cell, mark that cell '#| export' too (as its first line), or define "
                f"{err.name} inside an exercise cell."
            )
        pytest.fail(
            f"running the exercise cells of {notebook.name} failed: {type(err).__name__}: "
            f"{err}{hint}",
            pytrace=False,
        )
    return _loaded[notebook]


@pytest.mark.parametrize("notebook, name, problem", list(_cases()))
def test_notebook_code_passes_its_check(notebook, name, problem):
    if problem:
        pytest.fail(f"{notebook.name}: {problem}", pytrace=False)
    module = _module(notebook)
    problem = None
    try:
        CHECKS[name](getattr(module, name))
    except NotImplementedError as stub:
        problem = (
            f"{name} raised NotImplementedError({str(stub)!r}): an exercise it uses is not "
            "written yet"
        )
    except (
        AssertionError
    ) as failure:  # the check's own report says what is wrong; its stack trace would not help
        problem = str(failure)
    if problem:
        pytest.fail(problem, pytrace=False)
