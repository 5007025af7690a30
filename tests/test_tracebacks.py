"""utils/tracebacks.py in a real kernel: after every notebook's first cell, a traceback leaves out
PyTorch's module-call frames and keeps every other frame, the message, chained exceptions and the
checks' one-line failures; without it, those frames are there."""

from __future__ import annotations


import nbformat
from notebook_runner import notebook_client
from terminal_text import without_colours

from utils.export import ROOT

MODELS = """import torch, torch.nn as nn
class Inner(nn.Module):
    def forward(self, x):
        return x @ torch.ones(3, 2)  # the learner's mistake: [2, 4] @ [3, 2]
class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Inner()
    def forward(self, x):
        return self.inner(x)
@torch.no_grad()
def predict(model, x):
    return model(x)
"""
CELLS = {
    "nested": "predict(Outer(), torch.ones(2, 4))",
    "chained": (
        "try:\n    Outer()(torch.ones(2, 4))\n"
        "except RuntimeError as err:\n    raise ValueError('it went wrong') from err"
    ),
    "hooked": (  # with a hook, Module._call_impl runs the forward from a nested function
        "hooked = Outer()\nhooked.inner.register_forward_hook(lambda module, args, out: out)\n"
        "hooked(torch.ones(2, 4))"
    ),
    "no argument": "Outer()()",  # raised by Module._call_impl itself: that frame stays
    "check": "from utils import checks\nchecks.check_copying_score(torch.eye(3))",
    # a bad argument, refused by utils/validation.py: its frames go, the caller's line stays
    "refused": "from utils.bpe import train_merges\ntrain_merges('some text', -1)",
}


def _tracebacks(first_cell: str) -> dict[str, str]:
    setup = f"import sys, os\nsys.path.insert(0, {str(ROOT)!r})\n{first_cell}"
    cells = [setup, MODELS, *CELLS.values(), "print('the cells after an error still run')"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
    notebook_client(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    assert nb.cells[-1].outputs[0]["text"] == "the cells after an error still run\n"
    shown = {}
    for name, cell in zip(CELLS, nb.cells[2:]):
        [error] = [output for output in cell.outputs if output["output_type"] == "error"]
        shown[name] = without_colours("\n".join(error["traceback"]))
    return shown


def test_a_notebook_traceback_leaves_out_pytorchs_module_call_frames(monkeypatch):
    monkeypatch.setenv("TUTORIAL_CONFIG", "ci")
    shown = _tracebacks("from utils.configs import setup_notebook\nrun_cfg = setup_notebook()")
    for name in ("nested", "chained", "hooked"):
        text = shown[name]
        assert "module.py" not in text and "_contextlib.py" not in text, text
        assert "in Outer.forward" in text and "in Inner.forward" in text, text
        assert "mat1 and mat2 shapes cannot be multiplied (2x4 and 3x2)" in text, text
    assert "in predict" in shown["nested"]
    assert "The above exception was the direct cause" in shown["chained"]
    assert shown["chained"].rstrip().endswith("ValueError: it went wrong")
    assert "_call_impl" in shown["no argument"] and "_wrapped_call_impl" not in shown["no argument"]
    assert "missing 1 required positional argument: 'x'" in shown["no argument"]
    assert shown["check"].startswith("TypeError: check_copying_score takes your function")
    assert len(shown["check"].splitlines()) <= 3  # the check's message alone, as before
    refused = shown["refused"]
    assert "validation.py" not in refused, refused
    assert "in train_merges" in refused and "n_merges = require_int(" in refused, refused
    assert refused.rstrip().endswith("ValueError: n_merges must be an int >= 0, got -1"), refused


def test_without_it_the_module_call_frames_are_there():
    """What the first cell changes: PyTorch's frames, two for each module called."""
    shown = _tracebacks("")
    assert shown["nested"].count("module.py") >= 4 and "_contextlib.py" in shown["nested"]
    assert "in Inner.forward" in shown["nested"]
    assert "validation.py" in shown["refused"]


EXERCISE_CELLS = [
    "def induction_score(pattern):\n"
    '    raise NotImplementedError("take the diagonal, then the mean")',
    "scores = [induction_score(p) for p in range(3)]\nheads = [s for s in scores if s > 0.5]",
    "labels = [str(h) for h in heads]",  # reads a name the stopped cell never set
    "print(labels)",  # and one the cell it stopped never set
    "print(hedas)",  # a typo: nothing to do with an exercise
]


def test_a_name_an_unfinished_exercise_left_unset_names_the_exercise(monkeypatch):
    monkeypatch.setenv("TUTORIAL_CONFIG", "ci")
    setup = (
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from utils.configs import setup_notebook\nrun_cfg = setup_notebook()"
    )
    cells = [setup, *EXERCISE_CELLS]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
    notebook_client(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    shown = [  # wrapped lines joined again
        " ".join(without_colours("\n".join(o["traceback"])).split())
        for cell in nb.cells[2:]
        for o in cell.outputs
        if o["output_type"] == "error"
    ]
    stub, heads, labels, typo = shown
    assert "NotImplementedError: take the diagonal, then the mean" in stub, stub
    for text, name in ((heads, "heads"), (labels, "labels")):
        assert f"NameError: name '{name}' is not defined" in text, text
        assert (
            f"Note: '{name}' is set by an earlier cell that stopped at an exercise still to do, "
            "induction_score (NotImplementedError: take the diagonal, then the mean)" in text
        ), text
    assert "NameError: name 'hedas' is not defined" in typo and "Note:" not in typo, typo
