"""Run a notebook's code cells in order as a plain Python script: no Jupyter, nbconvert or IPython
needed.

    python bench/run_notebook.py notebooks/03_training.ipynb [--out DIR]

As in Jupyter, the cells share one namespace, run in the notebook's folder, and a cell that ends in
an expression shows its value (unless the cell ends with `;`). Each cell's output follows a
`--- cell N ---` header. Plotly's `fig.show()` prints `[figure: <title>]` and, with --out, saves the
figure as DIR/cell_NN_fig_K.html (plotly.js from its CDN; the first 6 figures only, so that what
comes back from a device run stays small). `display(...)` is a builtin that prints repr (or shows a
figure). IPython magics and shell lines (`%...`, `!...`) are skipped with a note. On an exception:
the cell number, its first lines and the traceback (on stderr), exit 1.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import json
import linecache
import os
import sys
import traceback
from pathlib import Path

from plotly.basedatatypes import BaseFigure

MAX_FIGURES = 6
state = {"cell": 0, "fig_in_cell": 0, "saved": 0, "out": None}


def show(fig: BaseFigure, *args, **kwargs) -> None:
    """Replaces BaseFigure.show: one line on stdout, and an HTML file under --out for the first
    MAX_FIGURES."""
    state["fig_in_cell"] += 1
    note = ""
    if state["out"] is not None:
        if state["saved"] < MAX_FIGURES:
            state["saved"] += 1
            path = state["out"] / f"cell_{state['cell']:02d}_fig_{state['fig_in_cell']}.html"
            fig.write_html(path, include_plotlyjs="cdn")
            note = f" -> {path.name}"
        else:
            note = f" (not saved: {MAX_FIGURES} figures already)"
    print(f"[figure: {fig.layout.title.text or 'untitled'}]{note}", flush=True)


def display(*objects, **kwargs) -> None:
    for obj in objects:
        obj.show() if isinstance(obj, BaseFigure) else print(repr(obj), flush=True)


def strip_magics(source: str, number: int) -> str:
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("%", "!")):
            print(f"[cell {number}: skipped IPython line: {line.strip()}]")
            lines[i] = line[: len(line) - len(line.lstrip())] + "pass"
    return "\n".join(lines)


def run_cell(source: str, namespace: dict, filename: str) -> None:
    linecache.cache[filename] = (
        len(source),
        None,
        source.splitlines(True),
        filename,
    )  # cell lines in tracebacks
    tree = ast.parse(source, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
        if value is not None and not source.rstrip().endswith(";"):
            display(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("notebook", type=Path)
    parser.add_argument(
        "--out", type=Path, help="folder for the figures' HTML files (default: none saved)"
    )
    args = parser.parse_args()
    notebook = args.notebook.resolve()
    if args.out is not None:
        state["out"] = args.out.resolve()
        state["out"].mkdir(parents=True, exist_ok=True)
    cells = [
        c["source"]
        for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        if c["cell_type"] == "code"
    ]

    sys.stdout.reconfigure(line_buffering=True)  # stream each line, even into a pipe or a log file
    BaseFigure.show = show
    builtins.display = display
    os.chdir(notebook.parent)
    sys.path[0] = str(
        notebook.parent
    )  # as in Jupyter: the notebook's folder, not bench/, is importable
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    for number, source in enumerate(cells, 1):
        source = "".join(source) if isinstance(source, list) else source
        state["cell"], state["fig_in_cell"] = number, 0
        print(f"--- cell {number} ---")
        try:
            run_cell(strip_magics(source, number), namespace, f"<cell {number}>")
        except Exception as exc:
            sys.stdout.flush()
            tb = exc.__traceback__
            while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(
                "<cell "
            ):  # drop our frames
                tb = tb.tb_next
            head = "\n".join("    " + line for line in source.splitlines()[:5])
            print(
                f"\nFAILED in cell {number} of {len(cells)} ({notebook.name}), which begins:\n"
                f"{head}\n",
                file=sys.stderr,
            )
            traceback.print_exception(type(exc), exc, tb)
            sys.exit(1)
    print(f"--- done: {len(cells)} cells of {notebook.name} ---")


if __name__ == "__main__":
    main()
