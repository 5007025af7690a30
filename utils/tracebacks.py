"""Tracebacks in a notebook without PyTorch's module-call frames.

Calling a module, `model(tokens)`, runs `Module._wrapped_call_impl` and `Module._call_impl` (and,
with hooks attached, its `inner`) before your `forward`, and a function under `@torch.no_grad()`
runs `decorate_context`: two or three frames, about a dozen lines of PyTorch's source, for each
module between the cell and the line that raised, none of which says anything about your code.
`hide_call_frames()` (called by every notebook's first cell, through utils.configs.setup_notebook)
tells IPython to leave those frames out of a traceback (unless one raised the error); every other
frame and the message are shown as before, and outside IPython (pytest, scripts) nothing changes.

In an exercise notebook, a cell that stops at an exercise still to do (its stub's
NotImplementedError) never sets what it was to set; a later cell that reads one of those names
raises NameError. That NameError gets a note naming the exercise, instead of leaving the learner to
wonder where the name went.
"""

from __future__ import annotations

import ast
import sys
from types import TracebackType

from utils.printing import wrap_lines

# (file, function) of the frames that only pass a call on
_CALL_FRAMES = {
    ("torch/nn/modules/module.py", "_wrapped_call_impl"),
    ("torch/nn/modules/module.py", "_call_impl"),
    ("torch/nn/modules/module.py", "inner"),  # _call_impl's, when the module has hooks
    ("torch/utils/_contextlib.py", "decorate_context"),
}


def _passes_the_call_on(tb: TracebackType) -> bool:
    code = tb.tb_frame.f_code
    path = code.co_filename.replace("\\", "/")
    return any(path.endswith(file) and code.co_name == name for file, name in _CALL_FRAMES)


def _checks_arguments(tb: TracebackType) -> bool:
    """A frame of utils/validation.py, whose functions refuse bad arguments with one message."""
    return tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("utils/validation.py")


def without_call_frames(tb: TracebackType | None, refused: bool = False) -> TracebackType | None:
    """The traceback `tb` with the frames of _CALL_FRAMES taken out (the rest linked as before),
    but for the last: the frame that raised is always shown. With `refused` (a ValueError or
    TypeError: bad arguments), the frames of utils/validation.py go too, the one that raised
    included: the line that called the check and its message say what was wrong."""
    kept = []
    while tb is not None:
        in_a_check = refused and _checks_arguments(tb)
        if tb.tb_next is None:  # the frame that raised: shown, unless a check refused
            if not (in_a_check and kept):
                kept.append(tb)
        elif not (_passes_the_call_on(tb) or in_a_check):
            kept.append(tb)
        tb = tb.tb_next
    for earlier, later in zip(kept, kept[1:]):
        earlier.tb_next = later
    if kept:
        kept[-1].tb_next = None
    return kept[0] if kept else None


# in this kernel: each name that a cell would have set, had it not stopped at an exercise still to
# do, and that exercise: its function and its stub's message
_UNSET_BY_AN_EXERCISE: dict[str, str] = {}


_OWN_SCOPES = (ast.Lambda, ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)


def _names_set_by(cell: str, shell) -> set[str]:
    """The names a cell's code assigns, defines or imports at its top level (not inside its
    functions, classes or comprehensions)."""
    try:
        tree = ast.parse(shell.transform_cell(cell))  # %magics and !commands as Python
    except (SyntaxError, ValueError):  # ValueError: a null byte in the cell
        return set()
    names, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif not isinstance(node, _OWN_SCOPES):
            todo.extend(ast.iter_child_nodes(node))
    return names


def _stub_raised_in_a_cell(exception: BaseException) -> str | None:
    """The name of the function, written in a cell, that raised `exception`; None if the code that
    raised is not a cell's."""
    tb = exception.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return None
    code = tb.tb_frame.f_code
    in_a_cell = "ipykernel_" in code.co_filename or code.co_filename.startswith("<ipython-input")
    return code.co_name if in_a_cell else None


def _note_an_unfinished_exercise(shell, value: BaseException) -> str | None:
    """Remember what a cell stopped at an exercise stub leaves unset; for a NameError on one of
    those names, the note that says so (the cell it stops then leaves its own names unset too)."""
    history = shell.user_ns.get("In") or [""]
    cell = history[-1] if isinstance(history[-1], str) else ""
    stub = _stub_raised_in_a_cell(value) if isinstance(value, NotImplementedError) else None
    if stub is not None:
        exercise = "" if stub == "<module>" else f" {stub}"  # the function, or the cell itself
        for name in _names_set_by(cell, shell):
            _UNSET_BY_AN_EXERCISE[name] = f"{exercise} (NotImplementedError: {value})"
        return None
    name = getattr(value, "name", None) if isinstance(value, NameError) else None
    if name not in _UNSET_BY_AN_EXERCISE:
        return None
    stub = _UNSET_BY_AN_EXERCISE[name]
    for unset in _names_set_by(cell, shell):
        _UNSET_BY_AN_EXERCISE.setdefault(unset, stub)
    return wrap_lines(
        f"Note: {name!r} is set by an earlier cell that stopped at an exercise still to "
        f"do,{stub}. Finish that exercise and run its cell again, then this one."
    )


def _show_without_call_frames(shell, etype, value, tb, tb_offset=None):
    note = _note_an_unfinished_exercise(shell, value)
    if note is not None and hasattr(value, "add_note"):  # Python 3.11 on: shown below the error
        value.add_note(note)
        note = None
    seen, exception = set(), value
    while exception is not None and id(exception) not in seen:  # the chained ones too
        seen.add(id(exception))
        refused = isinstance(exception, (ValueError, TypeError))
        exception.__traceback__ = without_call_frames(exception.__traceback__, refused)
        exception = exception.__cause__ or exception.__context__
    shell.showtraceback((etype, value, value.__traceback__), tb_offset=tb_offset)
    if note is not None:
        print(note, file=sys.stderr)


def hide_call_frames() -> None:
    """In IPython (JupyterLab, Colab), show tracebacks without PyTorch's module-call frames."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and shell.custom_exceptions in ((), (Exception,)):  # not another's
        shell.set_custom_exc((Exception,), _show_without_call_frames)
