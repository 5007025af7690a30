"""Generate library modules from marked notebook cells, so the notebook and the module never drift
(as nbdev does).

A notebook names its module once, in a code cell line `#| default_exp model`, and marks each cell
that belongs in it with a leading `#| export` line; `#| export fused` sends a cell to utils/fused.py
instead (a second module from the same notebook). `python -m utils.export` (or `make export`) writes
utils/<module>.py; `python -m utils.export --check` fails if any module differs from what its
notebook would generate.

Export cells also run in the notebook, where a learner may have pasted their own classes. So an
export cell imports other generated modules as modules (`import utils.model`, then
`utils.model.LayerNorm`), never names from them (`from utils.model import LayerNorm` would replace
the learner's LayerNorm in the notebook's namespace).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from utils.cli import OneLineParser
from utils.files import require_path, write_atomically

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXPORT_MARK = "#| export"
MODULE_MARK = "#| default_exp"
# Exercise markers (utils/exercises.py): the module gets the code between them, without the marker
# lines.
SOLUTION_BEGIN = "# SOLUTION:"
SOLUTION_END = "# END SOLUTION"


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def split_directives(source: str) -> tuple[list[str], list[str]]:
    """A code cell's leading `#|` directive lines, and the lines after them."""
    lines = source.splitlines()
    n = next((i for i, line in enumerate(lines) if not line.startswith("#|")), len(lines))
    return [line.strip() for line in lines[:n]], lines[n:]


def strip_markers(code: str) -> str:
    """Code without the exercise markers' `# SOLUTION: ...` and `# END SOLUTION` lines."""
    return "\n".join(
        line
        for line in code.splitlines()
        if not line.strip().startswith((SOLUTION_BEGIN, SOLUTION_END))
    )


def export_target(directives: list[str]) -> str | None:
    """'' for a plain `#| export` (the notebook's default module), the module's name for
    `#| export NAME`, None if not exported."""
    for line in directives:
        if line == EXPORT_MARK or line.startswith(EXPORT_MARK + " "):
            return line[len(EXPORT_MARK) :].strip()
    return None


def exported_sources(
    cells: list[dict], module: str | None = "", origin: str | None = None
) -> list[str]:
    """The code of the cells marked `#| export` (module "", the default) or `#| export <module>`, or
    of every exported cell (module None), without their directives and exercise markers.
    With `origin` (the notebook's path), each chunk starts with a comment naming its code cell, so a
    traceback in a generated module leads to the cell to edit (code cells counted from 1, as they
    appear down the notebook)."""
    chunks = []
    code_cells = [cell for cell in cells if cell.get("cell_type") == "code"]
    for number, cell in enumerate(code_cells, 1):
        directives, body = split_directives(cell_source(cell))
        target = export_target(directives)
        if target is not None and module in (None, target):
            code = strip_markers("\n".join(body)).strip("\n")
            chunks.append(f"# --- {origin}, code cell {number}\n{code}" if origin else code)
    return chunks


def module_code(chunks: list[str]) -> str:
    """Cells' code joined into one module; a __future__ import moves to the top, where Python
    requires it."""
    future = "from __future__ import annotations"
    body = "\n\n\n".join(chunks)
    if future in body:
        body = future + "\n\n" + body.replace(future + "\n", "").lstrip("\n")
    return body


def read_notebook(
    notebook, example: str = "give a path like notebooks/02_clean_implementation.ipynb"
) -> dict:
    """A notebook's JSON, or one clear line: not a path, no such file, a folder, not a notebook."""
    path = require_path(f"notebook must be a path ({example})", notebook)
    if not path.exists():
        raise FileNotFoundError(f"no notebook at {path}; {example}")
    if not path.is_file():
        raise IsADirectoryError(f"{path} is a folder, not a notebook; {example}")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(nb["cells"], list):
            raise TypeError
    except (ValueError, KeyError, TypeError):  # not UTF-8, not JSON, or JSON without cells
        raise ValueError(
            f"{path} is not a Jupyter notebook (.ipynb JSON with cells); {example}"
        ) from None
    return nb


def exported_modules(notebook_path: Path) -> list[tuple[str, str]]:
    """(module name, module text) for each module a notebook generates: its `#| default_exp` one,
    and any `#| export NAME`."""
    cells = read_notebook(notebook_path)["cells"]
    default, extra = None, []
    for cell in cells:
        if cell.get("cell_type") == "code":
            directives = split_directives(cell_source(cell))[0]
            for line in directives:
                if line.startswith(MODULE_MARK):
                    default = line[len(MODULE_MARK) :].strip()
            target = export_target(directives)
            if target and target not in extra:
                extra.append(target)
    if default is None:
        return []
    rel = notebook_path.resolve().relative_to(ROOT)
    header = (
        f'"""GENERATED from {rel.as_posix()} by `make export` -- do not edit here.\n\n'
        f'Edit the notebook\'s `{EXPORT_MARK}` cells instead, then run `make export`."""\n'
    )
    modules = []
    for module, target in [(default, ""), *((name, name) for name in extra)]:
        chunks = exported_sources(cells, target, origin=rel.as_posix())
        if not chunks:
            raise ValueError(
                f"{notebook_path.name} names module {module!r} but has no '{EXPORT_MARK}' cells"
            )
        modules.append((module, signed(ruff_formatted(header + "\n" + module_code(chunks) + "\n"))))
    return modules


SIGNATURE = "# written by `make export`; sha256 of the text above: "


def signed(text: str) -> str:
    """`text` with a last line that tells a hand edit (which `make export` backs up before it
    writes over it) from what `make export` wrote (two blank lines before it, as ruff wants)."""
    return f"{text}\n\n{SIGNATURE}{hashlib.sha256(text.encode()).hexdigest()[:16]}\n"


def hand_edited(path: Path) -> bool:
    """Whether the module at `path` differs from what `make export` last wrote there."""
    text = path.read_text(encoding="utf-8")
    body, found, _ = text.rpartition(f"\n\n{SIGNATURE}")
    return not found or signed(body) != text


def ruff_formatted(code: str) -> str:
    """`code` as `ruff format` writes it with the repository's ruff.toml, so that a generated module
    passes the format check of `make test` as its notebook's cells do."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        raise RuntimeError("`make export` needs ruff (in requirements.txt): pip install ruff")
    command = [
        ruff,
        "format",
        "--config",
        str(ROOT / "ruff.toml"),
        "--stdin-filename",
        "module.py",
        "-",
    ]
    result = subprocess.run(command, input=code, capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(f"ruff could not format the generated module: {result.stderr.strip()}")
    return result.stdout


def module_path(module: str) -> Path:
    return ROOT / "utils" / f"{module}.py"


def _generated(notebooks: list[Path] | None = None):
    """(notebook, module, text, path, differs) for every notebook that names a module."""
    if notebooks is not None and (
        isinstance(notebooks, (str, bytes)) or not isinstance(notebooks, (list, tuple))
    ):
        raise TypeError(
            f"notebooks must be a list of notebook paths (or None: every notebook), got "
            f"{type(notebooks).__name__}"
        )
    for nb in notebooks or sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = Path(nb) if isinstance(nb, str) else nb
        for module, text in exported_modules(nb):
            path = module_path(module)
            yield (
                nb,
                module,
                text,
                path,
                not path.exists() or path.read_text(encoding="utf-8") != text,
            )


def stale_modules(notebooks: list[Path] | None = None) -> list[str]:
    """Modules whose file differs from what its notebook generates."""
    return [
        f"utils/{module}.py (from {nb.name})"
        for nb, module, _, _, differs in _generated(notebooks)
        if differs
    ]


def export_all(notebooks: list[Path] | None = None) -> list[str]:
    """Write every module that is out of date; a module edited by hand is copied to utils/backup/
    first. Returns what it did, one message each."""
    messages = []
    for nb, _, text, path, differs in _generated(notebooks):
        if not differs:
            continue
        if path.exists() and hand_edited(path):
            stamp = time.strftime("%Y%m%d-%H%M%S")
            backup = path.parent / "backup" / f"{path.stem}.{stamp}.py"
            for n in itertools.count(2):  # two edits backed up within one second: keep both
                if not backup.exists():
                    break
                backup = backup.with_name(f"{path.stem}.{stamp}-{n}.py")
            backup.parent.mkdir(exist_ok=True)
            shutil.copy2(path, backup)
            messages.append(
                f"kept your edit of {_shown(path)} as {_shown(backup)}: edits belong in "
                f"{nb.name}'s `{EXPORT_MARK}` cells, which write the module"
            )
        write_atomically(path, text)
        messages.append(f"wrote {_shown(path)}")
    return messages


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def run_generator(argv: list[str] | None, description: str, stale, write, target: str) -> int:
    """Command line shared by the generators: write what is out of date, or with --check only report
    it (exit 1)."""
    parser = OneLineParser(prog=f"python -m utils.{target}", description=description)
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"fail if a file differs from what `make {target}` writes",
    )
    if parser.parse_args(argv).check:
        items = stale()
        for item in items:
            print(f"out of date: {item}; run `make {target}`")
        return 1 if items else 0
    for message in write() or ["everything is up to date"]:
        print(message)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_generator(
        argv,
        __doc__.split("\n\n")[0].replace("\n", " "),
        stale_modules,
        export_all,
        "export",
    )


if __name__ == "__main__":
    sys.exit(main())
