"""How much of each notebook's code teaches, measured from its cells (CONTRIBUTING.md's table).

    python bench/notebook_stats.py [notebooks/NN_*.ipynb ...]

Per notebook: code lines (non-blank lines of code cells), what the learner writes (the lines
between `# SOLUTION:` and `# END SOLUTION`), guard lines (a `raise` and the `if` that leads only to
it, `try`/`except` blocks, and calls of utils/validation.py's `require_*`/`check_*` functions: the
plumbing that stays in a cell), teaching lines (the rest) and their ratio to the guard lines, the
largest code cell, lines over 100 characters, and, for notebook 03, the code lines from its last
exercise's cell to the cell that calls `.train()`; for notebook 05, the code lines before the
first cell that records activations (`run_with_cache(`).
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


# utils/validation.py's checks (the exercises' checks, `checks.check_...`, teach: not counted)
VALIDATION_CALLS = {
    "check_config",
    "check_training_args",
    "check_generate_args",
    "check_beam_search_args",
    "check_cache_use",
    "check_hook_fn",
    "checked_replacement",
    "not_reentered",
}


def _guard_lines(code: str) -> set[int]:
    """Line numbers (1-based) of guards: raises with their if, try/except, validation calls."""
    lines: set[int] = set()
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return lines
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and all(isinstance(s, ast.Raise) for s in node.body):
            lines.update(range(node.lineno, node.end_lineno + 1))
        elif isinstance(node, ast.Raise):
            lines.update(range(node.lineno, node.end_lineno + 1))
        elif isinstance(node, ast.Try):
            for handler in node.handlers:
                lines.update(range(handler.lineno, handler.end_lineno + 1))
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name.startswith("require_") or name in VALIDATION_CALLS:
                lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def stats(path: Path) -> dict:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code_cells = [_source(c) for c in cells if c["cell_type"] == "code"]
    total = learner = guards = longest_cell = over_100 = 0
    solution = False
    last_exercise = train_cell = first_activation = None
    per_cell = []
    for index, code in enumerate(code_cells):
        lines = code.splitlines()
        guard = _guard_lines("\n".join(line for line in lines))
        nonblank = [i for i, line in enumerate(lines, 1) if line.strip()]
        per_cell.append(len(nonblank))
        total += len(nonblank)
        guards += len([i for i in nonblank if i in guard])
        longest_cell = max(longest_cell, len(nonblank))
        over_100 += sum(len(line) > 100 for line in lines)
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("# SOLUTION:"):
                solution = True
            elif stripped.startswith("# END SOLUTION"):
                solution = False
            elif solution and stripped:
                learner += 1
        if any(line.startswith("#| exercise") for line in lines):
            last_exercise = index
        if train_cell is None and ".train()" in code and "def " not in code:
            train_cell = index
        if (
            first_activation is None
            and "run_with_cache(" in code
            and "def run_with_cache" not in code
        ):
            first_activation = index
    teaching = total - guards
    result = {
        "code lines": total,
        "learner writes": learner,
        "teaching lines": teaching,
        "guard lines": guards,
        "teaching / guards": round(teaching / guards, 1) if guards else float("inf"),
        "largest code cell": longest_cell,
        "lines over 100": over_100,
    }
    if path.name.startswith("03") and last_exercise is not None and train_cell is not None:
        result["last exercise to train()"] = sum(per_cell[last_exercise + 1 : train_cell + 1])
    if path.name.startswith("05") and first_activation is not None:
        result["code before the first activation"] = sum(per_cell[:first_activation])
    return result


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        print(path.name, json.dumps(stats(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
