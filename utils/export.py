"""Generate library modules from marked notebook cells, so the notebook and the module never drift (as nbdev does).

A notebook names its module once, in a code cell line `#| default_exp model`, and marks each cell that belongs
in it with a leading `#| export` line. `python -m utils.export` (or `make export`) writes utils/<module>.py;
`python -m utils.export --check` fails if any module differs from what its notebook would generate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXPORT_MARK = "#| export"
MODULE_MARK = "#| default_exp"
# Exercise markers (utils/exercises.py): the module gets the code between them, without the marker lines.
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
    return "\n".join(line for line in code.splitlines() if not line.strip().startswith((SOLUTION_BEGIN, SOLUTION_END)))


def exported_module(notebook_path: Path) -> tuple[str, str] | None:
    """(module name, module text) for a notebook with a `#| default_exp` line, else None."""
    cells = json.loads(Path(notebook_path).read_text(encoding="utf-8"))["cells"]
    module, chunks = None, []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        directives, body = split_directives(cell_source(cell))
        for line in directives:
            if line.startswith(MODULE_MARK):
                module = line[len(MODULE_MARK):].strip()
        if EXPORT_MARK in directives:
            chunks.append(strip_markers("\n".join(body)).strip("\n"))
    if module is None:
        return None
    if not chunks:
        raise ValueError(f"{notebook_path.name} names module {module!r} but has no '{EXPORT_MARK}' cells")
    rel = notebook_path.resolve().relative_to(ROOT)
    header = (f'"""GENERATED from {rel.as_posix()} by `make export` -- do not edit here.\n\n'
              f'Edit the notebook\'s `{EXPORT_MARK}` cells instead, then run `make export`."""\n')
    future = "from __future__ import annotations"
    body = "\n\n\n".join(chunks)
    if future in body:  # a __future__ import must come first in the module
        body = body.replace(future + "\n", "").lstrip("\n")
        header += "\n" + future + "\n"
    return module, header + "\n" + body + "\n"


def module_path(module: str) -> Path:
    return ROOT / "utils" / f"{module}.py"


def _generated(notebooks: list[Path] | None = None):
    """(notebook, module, text, path, differs) for every notebook that names a module."""
    for nb in notebooks or sorted(NOTEBOOKS.glob("*.ipynb")):
        exported = exported_module(nb)
        if exported is not None:
            module, text = exported
            path = module_path(module)
            yield nb, module, text, path, not path.exists() or path.read_text(encoding="utf-8") != text


def stale_modules(notebooks: list[Path] | None = None) -> list[str]:
    """Modules whose file differs from what its notebook generates."""
    return [f"utils/{module}.py (from {nb.name})" for nb, module, _, _, differs in _generated(notebooks) if differs]


def export_all(notebooks: list[Path] | None = None) -> list[Path]:
    written = []
    for _, _, text, path, differs in _generated(notebooks):
        if differs:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated module is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_modules()
        for item in stale:
            print(f"out of date: {item}; run `make export`")
        return 1 if stale else 0
    for path in export_all():
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
