"""Exercise notebooks, generated from the solution notebooks so the two never drift.

In a solution notebook (notebooks/NN_*.ipynb), an exercise is a code cell that starts with
directive lines

    #| exercise difficulty=2 importance=4 minutes=10-15
    #| hint: a longer hint, shown folded under the exercise

and marks each piece of code the learner writes with comment lines:

        # SOLUTION: one-line hint, which the stub raises
        ...the solution code...
        # END SOLUTION

`python -m utils.exercises` (or `make exercises`) writes exercises/NN_*.ipynb: each marked block
becomes `raise NotImplementedError("<one-line hint>")` (signatures, docstrings and shape annotations
stay), a card above the cell states difficulty, importance and time, and folded hint and solution
cells follow it. Prose, checks and unmarked code are copied unchanged. `--check` fails if the
committed exercises differ from what the notebooks generate.
A learner's exercise notebook is never replaced without a backup: one that differs in any way from
the version about to be written (code, outputs, metadata) is first copied to
exercises/backup/<name>.<date-time with microseconds>.ipynb, a name no earlier backup has, and the
command prints where.
"""

from __future__ import annotations

import ast
import copy
import datetime
import hashlib
import itertools
import json
import linecache
import re
import shutil
import sys
import types
from pathlib import Path

from utils.export import (
    read_notebook,
    EXPORT_MARK,
    NOTEBOOKS,
    ROOT,
    SOLUTION_BEGIN as BEGIN,
    SOLUTION_END as END,
    cell_source,
    export_target,
    exported_sources,
    module_code,
    run_generator,
    split_directives,
    strip_markers,
)
from utils.files import abandoned, require_path, write_atomically

EXERCISES = ROOT / "exercises"
EXERCISE_MARK = "#| exercise"
HINT_MARK = "#| hint:"
SOLUTION_FENCE = re.compile(r"<summary>Solution</summary>\s*```python\n(.*?)\n```", re.S)
EXERCISE_FIELDS = re.compile(r"difficulty=(\d)\s+importance=(\d)\s+minutes=([\d-]+)")


def is_exercise(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and any(
        line.startswith(EXERCISE_MARK) for line in split_directives(cell_source(cell))[0]
    )


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stub_raise(hint: str, indent: str, width: int = 100) -> list[str]:
    """`raise NotImplementedError(hint)` as ruff formats it: one line if it fits in `width`, else
    the hint inside the parentheses, cut at spaces into pieces that fit (read in full, no sideways
    scroll)."""
    one_line = f"{indent}raise NotImplementedError({_quoted(hint)})"
    if len(one_line) <= width:
        return [one_line]
    inner = indent + " " * 4
    pieces, piece = [], ""
    for word in hint.split(" "):
        if piece and len(inner) + len(_quoted(piece + word)) > width:
            pieces.append(piece)
            piece = ""
        piece += word + " "
    pieces.append(piece.rstrip(" "))
    return [
        f"{indent}raise NotImplementedError(",
        *(inner + _quoted(p) for p in pieces),
        f"{indent})",
    ]


def stub_blocks(code: str, where: str = "") -> tuple[str, list[str]]:
    """Replace each marked block by `raise NotImplementedError(hint)` at the block's indentation;
    returns (stub, hints)."""
    out, hints, inside = [], [], False
    for number, line in enumerate(code.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError(f"{where} line {number}: '{BEGIN}' inside another solution block")
            hint = stripped[len(BEGIN) :].strip()
            if not hint:
                raise ValueError(
                    f"{where} line {number}: '{BEGIN}' needs a one-line hint after the colon"
                )
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# TODO: your code in place of this raise")
            out.extend(stub_raise(hint, indent))
            hints.append(hint)
            inside = True
        elif stripped.startswith(END):
            if not inside:
                raise ValueError(f"{where} line {number}: '{END}' without a '{BEGIN}' before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: a '{BEGIN}' block is not closed with '{END}'")
    if not hints:
        raise ValueError(
            f"{where}: an exercise cell needs at least one '{BEGIN} <hint>' ... '{END}' block"
        )
    return "\n".join(out), hints


def _stubbed_names(stub: str) -> list[str]:
    """The top-level functions and classes of a stubbed cell that contain a stub."""
    return [
        node.name
        for node in ast.parse(stub).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        and "raise NotImplementedError(" in (ast.get_source_segment(stub, node) or "")
    ]


def _card(names: list[str], difficulty: int, importance: int, minutes: str) -> str:
    dots = lambda n, mark: mark * n + "⚪" * (5 - n)  # noqa: E731
    title = ", ".join(f"`{name}`" for name in names)
    return (
        f"> **Exercise: {title}** · difficulty {dots(difficulty, '🔴')} · importance "
        f"{dots(importance, '🔵')} · about {minutes} minutes\n>\n"
        "> Replace each `raise NotImplementedError(...)` in the next cell with your code, run it, "
        "then run the check below the hint."
    )


def _exercise_cells(cell: dict, where: str) -> list[dict]:
    directives, body = split_directives(cell_source(cell))
    fields = next(
        (EXERCISE_FIELDS.search(line) for line in directives if line.startswith(EXERCISE_MARK)),
        None,
    )
    if fields is None:
        raise ValueError(
            f"{where}: write the exercise line as '{EXERCISE_MARK} difficulty=N importance=N "
            "minutes=M' (N from 1 to 5)"
        )
    difficulty, importance, minutes = int(fields[1]), int(fields[2]), fields[3]
    if not (1 <= difficulty <= 5 and 1 <= importance <= 5):
        raise ValueError(f"{where}: difficulty and importance run from 1 to 5")
    hint = " ".join(
        line[len(HINT_MARK) :].strip() for line in directives if line.startswith(HINT_MARK)
    )
    if not hint:
        raise ValueError(f"{where}: an exercise needs a '{HINT_MARK} ...' line")
    kept = [line for line in directives if not line.startswith((EXERCISE_MARK, HINT_MARK))]
    code = "\n".join(body)
    stub, _ = stub_blocks(code, where)
    solution = "\n".join([*kept, strip_markers(code)])
    cell_id = cell.get("id", "cell")
    card = {
        "cell_type": "markdown",
        "id": f"{cell_id}-card",
        "metadata": {},
        "source": _card(_stubbed_names(stub), difficulty, importance, minutes),
    }
    stub_cell = {
        "cell_type": "code",
        "id": cell_id,
        "metadata": {"tags": ["exercise"]},
        "execution_count": None,
        "outputs": [],
        "source": "\n".join([*kept, stub]),
    }
    folded = {
        "cell_type": "markdown",
        "id": f"{cell_id}-solution",
        "metadata": {},
        "source": (
            f"<details><summary>Hint</summary>\n\n{hint}\n\n</details>\n\n"
            f"<details><summary>Solution</summary>\n\n```python\n{solution}\n```\n\n</details>"
        ),
    }
    return [card, stub_cell, folded]


def _banner(solution_path: Path) -> dict:
    rel = solution_path.relative_to(ROOT).as_posix()
    name = solution_path.stem
    text = (
        "**Exercise version.** You write the code: each exercise below raises "
        "`NotImplementedError` until you do, and the cell after it checks your work (against "
        "a reference implementation, or GPT-2's own layers and tokenizer where it has them). "
        "Stuck? Open the hint, then the solution. "
        f"The complete notebook is [`{rel}`](../{rel}).\n\n"
        f"Prefer an editor and a test runner? `make check NOTEBOOK=exercises/{name}.ipynb` runs "
        "the same checks as pytest against the code in this notebook's `#| export` cells (that "
        "line marks them; leave it in).\n\n"
        "This file is generated by `make exercises`; it will not overwrite your edits (it moves "
        "an edited copy to `exercises/backup/` first), but keeping your work under another name "
        "(File ▸ Save Notebook As…) is simplest."
    )
    return {"cell_type": "markdown", "id": "exercise-banner", "metadata": {}, "source": text}


def exercise_notebook(solution_path: Path) -> dict | None:
    """The exercise version of a solution notebook, or None if it has no exercise cells."""
    nb = read_notebook(solution_path)
    if not any(is_exercise(cell) for cell in nb["cells"]):
        return None
    cells = []
    for i, cell in enumerate(nb["cells"]):
        if is_exercise(cell):
            cells.extend(_exercise_cells(cell, f"{solution_path.name} cell {i}"))
        else:
            cell = copy.deepcopy(cell)
            cell["source"] = cell_source(cell)
            cells.append(cell)
    first_markdown = next(i for i, cell in enumerate(cells) if cell["cell_type"] == "markdown")
    cells.insert(first_markdown + 1, _banner(Path(solution_path).resolve()))
    nb["cells"] = cells
    nb["metadata"]["exercises"] = {
        "generated_from": Path(solution_path).resolve().relative_to(ROOT).as_posix(),
        "sources_sha256": sources_hash(cells),
    }
    return nb


def sources_hash(cells: list[dict]) -> str:
    """Hash of the cells' types and sources (not outputs): tells a pristine generated notebook from
    one a learner edited."""
    text = json.dumps([[cell["cell_type"], cell_source(cell)] for cell in cells])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def to_json(nb: dict) -> str:
    """The notebook as Jupyter itself writes it, so that saving it or `make strip` leaves a pristine
    copy unchanged."""
    import nbformat

    return nbformat.writes(nbformat.from_dict(nb), version=4) + "\n"


def _what_matters(nb: dict) -> str:
    """What the staleness check compares: each cell's type, source and attachments (their base64
    without line breaks), and the notebook's metadata but for what JupyterLab fills in when it
    saves (the kernel's). A notebook opened and saved in JupyterLab is then not stale."""

    def attachments(cell: dict) -> dict:
        return {
            name: {mime: "".join("".join(data).split()) for mime, data in bundle.items()}
            for name, bundle in cell.get("attachments", {}).items()
        }

    cells = [[c["cell_type"], cell_source(c), attachments(c)] for c in nb["cells"]]
    lab_fills_in = ("kernelspec", "language_info")
    metadata = {k: v for k, v in nb.get("metadata", {}).items() if k not in lab_fills_in}
    return json.dumps([cells, metadata], sort_keys=True)


def _differs(path: Path, nb: dict) -> bool:
    try:
        return _what_matters(json.loads(path.read_text(encoding="utf-8"))) != _what_matters(nb)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, or not a notebook
        return True


def _generated(target: Path | None = None):
    """(path, text, differs) for each exercise notebook, in `target` (default exercises/)."""
    must = "target must be a folder path, such as 'exercises'"
    target = require_path(must, target) if target is not None else EXERCISES
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"the exercises go into a folder, and {target} is a file")
    for solution in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = exercise_notebook(solution)
        if nb is not None:
            path = target / solution.name
            yield path, to_json(nb), _differs(path, nb)


def _shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def stale_exercises(target: Path | None = None) -> list[str]:
    return [_shown(path) for path, _, differs in _generated(target) if differs]


def learner_edited(path: Path) -> bool:
    """True if the notebook's cells differ from what `make exercises` last wrote there (outputs do
    not count)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        recorded = nb.get("metadata", {}).get("exercises", {}).get("sources_sha256")
        return recorded != sources_hash(nb["cells"])
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
    ):  # not a notebook any more: certainly the learner's
        return True


def _backup_stamp() -> str:
    return datetime.datetime.now().strftime(
        "%Y%m%d-%H%M%S-%f"
    )  # microseconds; a counter below settles any tie


def back_up(path: Path) -> Path:
    """Copy `path` to backup/<stem>.<time>.ipynb beside it, under a name no other backup has (the
    copy is created exclusively, never over another file), and return the copy's path. The original
    is left in place."""
    path = require_path("path must be a notebook's path", path)
    if not path.is_file():
        raise FileNotFoundError(f"no file to back up at {path}")
    folder = path.parent / "backup"
    if folder.exists() and not folder.is_dir():  # nothing is overwritten without a backup
        raise NotADirectoryError(
            f"{folder} is a file, where backups of edited notebooks go: rename it, then run "
            f"`make exercises` again ({path.name} is unchanged)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    stamp, content = _backup_stamp(), path.read_bytes()
    for count in itertools.count():
        backup = folder / f"{path.stem}.{stamp}{f'-{count}' if count else ''}{path.suffix}"
        try:
            with open(backup, "xb") as file:
                file.write(content)
        except FileExistsError:
            continue
        shutil.copystat(path, backup)  # keeps the learner's modification time
        return backup


def write_exercises(target: Path | None = None) -> list[str]:
    """Write the exercise notebooks into `target` (default exercises/). A notebook there that
    differs in any way from the one about to be written (a learner's code, outputs, metadata) is
    copied to `target`/backup/ first; the messages say where."""
    messages = []
    for path, text, differs in _generated(target):
        if path.is_dir():
            raise IsADirectoryError(
                f"{path} is a folder, where an exercise notebook goes: rename it"
            )
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):  # what a killed run left
            if abandoned(tmp):
                tmp.unlink(missing_ok=True)
        if not differs:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            edited = learner_edited(path)
            backup = back_up(path)
            messages.append(
                f"kept your edited {_shown(path)} as {_shown(backup)}"
                if edited
                else f"kept a copy of the previous {_shown(path)} as {_shown(backup)}"
            )
        write_atomically(path, text)
        messages.append(f"wrote {_shown(path)}")
    return messages


# ------------------------------------------------------------------- used by tests and `make check`


def fill_in_solutions(nb: dict) -> dict:
    """What a learner who copies every folded solution into its exercise cell ends up with."""
    nb = copy.deepcopy(nb)
    cells = nb["cells"]
    for i, cell in enumerate(cells):
        if "exercise" in cell.get("metadata", {}).get("tags", []):
            shown = SOLUTION_FENCE.search(cell_source(cells[i + 1]))
            if shown is None:
                raise ValueError(f"exercise cell {cell.get('id')} has no folded solution after it")
            cell["source"] = shown[1]
    return nb


def code_cells(nb: dict):
    """(number, exported, source) for each code cell: number counts code cells from 1, as a learner
    counts them down the notebook."""
    cells = [c for c in nb["cells"] if c.get("cell_type") == "code"]
    for number, cell in enumerate(cells, 1):
        directives, body = split_directives(cell_source(cell))
        yield number, export_target(directives) is not None, "\n".join(body)


def cell_problems(nb: dict, checked: set[str]) -> dict[str, str]:
    """What would keep `make check` from testing a notebook's exercises, by name: syntax errors in
    exercise cells, and checked classes or functions defined in a cell that lost its `#| export`
    line."""
    problems = {}
    for number, exported, source in code_cells(nb):
        try:
            tree = ast.parse(strip_markers(source))
        except SyntaxError as err:
            if exported:
                problems[f"code cell {number}"] = (
                    f"code cell {number} has a SyntaxError on its line {err.lineno}: {err.msg}"
                    + (f": {err.text.strip()}" if err.text else "")
                )
            continue
        if not exported:
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in checked:
                    problems[node.name] = (
                        f"{node.name} is defined in code cell {number}, which has no "
                        f"'{EXPORT_MARK}' line, so make check cannot see it: put '{EXPORT_MARK}' "
                        "back as that cell's first line"
                    )
    return problems


def defined_names(nb: dict) -> list[str]:
    names = []
    for source in exported_sources(
        nb["cells"], module=None
    ):  # every exported cell, whichever module it goes to
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.append(node.name)
    return names


def load_definitions(notebook: str | Path, module_name: str | None = None) -> types.ModuleType:
    """Run a notebook's definition cells in a fresh module, so that checks can test the classes and
    functions written there."""
    example = "give a path like exercises/02_clean_implementation.ipynb"
    cells = read_notebook(notebook, example)["cells"]  # or one clear line
    path = Path(notebook)
    sources = exported_sources(cells, module=None)
    if not sources:
        raise ValueError(
            f"{path} has no '{EXPORT_MARK}' cells: there is nothing to check. Use one of the "
            "series' notebooks."
        )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    name = module_name or f"learner_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses look their module up here
    code = module_code(sources)
    filename = f"<{path.name}: exercise cells>"
    linecache.cache[filename] = (
        len(code),
        None,
        code.splitlines(True),
        filename,
    )  # so tracebacks and checks can quote its lines
    exec(compile(code, filename, "exec"), module.__dict__)
    return module


def main(argv: list[str] | None = None) -> int:
    return run_generator(
        argv, __doc__.splitlines()[0], stale_exercises, write_exercises, "exercises"
    )


if __name__ == "__main__":
    sys.exit(main())
