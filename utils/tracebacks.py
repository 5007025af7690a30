"""Tracebacks in a notebook without PyTorch's module-call frames.

Calling a module, `model(tokens)`, runs `Module._wrapped_call_impl` and `Module._call_impl` (and,
with hooks attached, its `inner`) before your `forward`, and a function under `@torch.no_grad()`
runs `decorate_context`: two or three frames, about a dozen lines of PyTorch's source, for each
module between the cell and the line that raised, none of which says anything about your code.
`hide_call_frames()` (called by every notebook's first cell, through utils.configs.setup_notebook)
tells IPython to leave those frames out of a traceback (unless one raised the error); every other
frame and the message are shown as before, and outside IPython (pytest, scripts) nothing changes.
"""

from __future__ import annotations

from types import TracebackType

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


def _show_without_call_frames(shell, etype, value, tb, tb_offset=None):
    seen, exception = set(), value
    while exception is not None and id(exception) not in seen:  # the chained ones too
        seen.add(id(exception))
        refused = isinstance(exception, (ValueError, TypeError))
        exception.__traceback__ = without_call_frames(exception.__traceback__, refused)
        exception = exception.__cause__ or exception.__context__
    shell.showtraceback((etype, value, value.__traceback__), tb_offset=tb_offset)


def hide_call_frames() -> None:
    """In IPython (JupyterLab, Colab), show tracebacks without PyTorch's module-call frames."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and shell.custom_exceptions in ((), (Exception,)):  # not another's
        shell.set_custom_exc((Exception,), _show_without_call_frames)
