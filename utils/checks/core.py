"""What every notebook's checks share: one way to call the learner's code, one way to describe a
known mistake, one way to fail.

learner_facing  the decorator on each public check: a failure (a CheckFailed, an AssertionError)
                shows the message alone, without the checks' or torch's frames, in IPython and
                Jupyter too; an exercise stub's NotImplementedError is raised from the stub's own
                line, so the learner sees its hint
call_learner    calls the learner's function, class or method; an exception becomes one
                AssertionError quoting their line
Mistake         a known mistake: its name, the exercise it is made in, and the advice shown when it
                is recognised
known_mistake   declares a Mistake once, in the MISTAKES registry (each notebook's checks declare
                theirs at their top)
recognise       the first known mistake whose reproduction (the reference, making that mistake)
                gives what the learner's gave
fail            raises the check's AssertionError: what differs, then the likely cause, or else what
                to check
"""

from __future__ import annotations

import functools
import inspect
import os
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

import numpy as np
import torch

from utils.printing import wrap_lines


# --------------------------------------------------------------------------- known mistakes


@dataclass(frozen=True)
class Mistake:
    """A mistake learners make, described once: the checks recognise it (by reproducing it, by its
    effect, or by the exception it raises) and then show its advice as the likely cause."""

    name: str  # unique id, e.g. "ln_eps_outside_sqrt"
    # where it is made: a name in CHECKS ("LayerNorm", "lr_at", ...), or one of its methods
    # ("Attention.forward")
    part: str
    # what is wrong and what to write instead; {fields} in it are filled in from the facts given to
    # likely_cause
    advice: str
    raises: type[BaseException] | None = (
        None  # the exception this mistake raises, where it raises one
    )
    says: str | None = None  # where `raises` is a common type: what its message says

    def likely_cause(self, **facts) -> str:
        return "  Likely cause: " + (self.advice.format(**facts) if facts else self.advice)


MISTAKES: dict[
    str, Mistake
] = {}  # every known mistake, by name, in the order the notebooks' checks declare them


def known_mistake(
    name: str,
    part: str,
    advice: str,
    raises: type[BaseException] | None = None,
    says: str | None = None,
) -> Mistake:
    """Declare a known mistake (once: a second declaration of the same name is a bug in the
    checks)."""
    if name in MISTAKES:
        raise ValueError(f"the known mistake {name!r} is declared twice")
    MISTAKES[name] = Mistake(name, part, advice, raises, says)
    return MISTAKES[name]


def mistakes_in(*parts: str) -> list[Mistake]:
    """The known mistakes made in these exercises or methods ("Attention" includes
    "Attention.forward"), in declaration order (the order in which they are tried)."""
    return [m for m in MISTAKES.values() if m.part in parts or m.part.split(".")[0] in parts]


def recognise(
    got: Any,
    mistakes: Iterable[Mistake],
    reproduce: Callable[[Mistake], Any],
    same: Callable[[Any, Any], bool],
) -> Mistake | None:
    """The first of `mistakes` for which `same(got, reproduce(mistake))`: the learner's result is
    what that mistake gives. `reproduce` runs the reference with the mistake made; it may give None
    (the mistake gives no result here) or a list (the results of several ways of making it).
    Reproductions run only when asked for, that is once the learner's result is wrong."""
    for mistake in mistakes:
        outputs = reproduce(mistake)
        for output in outputs if isinstance(outputs, list) else [outputs]:
            if output is not None and same(got, output):
                return mistake
    return None


def fits_every_case(
    mistake: Mistake,
    results: Iterable[tuple[Any, Any]],
    reproduce: Callable[[Mistake, Any], Any],
    same: Callable[[Any, Any], bool],
) -> bool:
    """Whether `mistake` gives the learner's result in every case: `results` holds (case, the
    learner's result) pairs, and `reproduce(mistake, case)` is as in `recognise`. Two mistakes that
    agree in one case are told apart by another."""
    return all(
        recognise(got, [mistake], lambda m: reproduce(m, case), same) is mistake
        for case, got in results
    )


def fail(
    lines: str | list[str],
    mistake: Mistake | None = None,
    things_to_check: str | None = None,
    **facts,
) -> NoReturn:
    """Raise the check's AssertionError: `lines` say what is wrong; then the mistake's advice as the
    likely cause or, when no known mistake was recognised, what to check."""
    lines = [lines] if isinstance(lines, str) else list(lines)
    if mistake is not None:
        lines.append(mistake.likely_cause(**facts))
    elif things_to_check:
        lines.append(
            "  None of the known mistakes reproduces your output. "
            f"Things to check: {things_to_check}"
        )
    raise AssertionError("\n".join(lines))


# ----------------------------------------------------------------------- calling the learner's code


def require_callable_as(fn, what: str, args: tuple = (), kwargs: dict | None = None) -> None:
    """A CheckUsageError unless `fn` can be called as the check calls it: not None, a tensor (the
    result of calling it) or a name in quotes, and with parameters that take these arguments (not
    a class where a function is wanted, nor a function of other parameters)."""
    if not callable(fn):
        got = "None" if fn is None else f"a {type(fn).__name__}"
        raise CheckUsageError(
            f"the check calls yours as {what}, but was given {got}: pass your function or class "
            f"itself, by its name, without calling it"
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: the call will say
        return
    try:
        signature.bind(*args, **(kwargs or {}))
    except TypeError:
        name = getattr(fn, "__name__", type(fn).__name__)
        kind = "a class" if isinstance(fn, type) else "a function"
        raise CheckUsageError(
            f"the check calls yours as {what}, but was given {name}{signature}, {kind} of other "
            f"parameters: pass the one the exercise asks for, {what.split('(')[0]}, with the "
            f"parameters it names"
        ) from None


def call_learner(
    fn: Callable,
    *args,
    what: str,
    things_to_check: str | None = None,
    known: Iterable[Mistake] = (),
    leaves_unchanged: str = "",
):
    """`fn(*args)`, where fn is the learner's function, class or method and `what` names the call in
    messages. An exercise stub's NotImplementedError passes through unchanged (its message says what
    to write). Any other exception becomes one AssertionError: what raised which error, the
    learner's own line, then the known mistake that raises that error or what to check. With
    leaves_unchanged="weights", the weights of a model given must be as they were; with "all", the
    tensors given too."""
    require_callable_as(fn, what, args)
    watched = _tensors_given(args, leaves_unchanged == "all") if leaves_unchanged else []
    before = [(name, tensor, tensor.detach().clone()) for name, tensor in watched]
    try:
        result = fn(*args)
    except NotImplementedError:
        raise
    except Exception as err:
        mistake = next((m for m in known if _raised_by(m, err)), None)
        # an error of several lines (einops'), its lines indented under the first
        said = "\n  ".join(line.strip() for line in str(err).strip().splitlines())
        lines = [f"{what} raised {type(err).__name__}: {said}{_your_line(err)}"]
        if mistake is not None:
            lines.append(mistake.likely_cause())
        elif things_to_check:
            lines.append(f"  Things to check: {things_to_check}")
        raise AssertionError("\n".join(lines)) from None
    for name, tensor, copy in before:
        same = tensor.shape == copy.shape and bool(
            (tensor.detach().eq(copy) | (tensor.detach().isnan() & copy.isnan())).all()
        )
        if not same:
            fail(
                f"{what} changed {name} in place: it only reads it. Compute on new tensors "
                "(x = x / n, not x /= n; .clone() before an in-place edit), or every later use of "
                "it is off"
            )
    return result


def _raised_by(mistake: Mistake, err: BaseException) -> bool:
    """Whether `err` is the exception `mistake` raises (and says what it says, where given)."""
    return (
        mistake.raises is not None
        and isinstance(err, mistake.raises)
        and (mistake.says is None or mistake.says in str(err))
    )


def as_number(value) -> float | None:
    """A learner's result as a float: a Python number, a one-element tensor or a numpy number (a
    0-d array from .numpy(), np.float32); else None."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach())
    if (
        isinstance(value, (np.ndarray, np.generic))
        and value.size == 1
        and value.dtype.kind in "fiu"
    ):
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _tensors_given(args, tensors: bool):
    """(name, tensor) for each weight of a model among `args` and, with `tensors`, each tensor."""
    for position, arg in enumerate(args, start=1):
        if isinstance(arg, torch.Tensor) and tensors:
            yield f"the tensor given as its argument {position}", arg
        elif isinstance(arg, torch.nn.Module):
            for name, tensor in [*arg.named_parameters(), *arg.named_buffers()]:
                yield f"the model's {name}", tensor


# Frames in these places are not the learner's: the project's library (utils/: the checks, and the
# generated modules that the learner's code calls, such as model.run_with_hooks), installed packages
# (torch...) and the standard library. The learner's code runs from notebook cells (or, under make
# check, from code compiled out of them). Compared as real paths: a virtual environment reached
# through a symbolic link names its files by the link in tracebacks.
_NOT_YOURS = tuple(
    os.path.realpath(p) + os.sep
    for p in (
        Path(__file__).parent.parent,
        Path(torch.__file__).parent.parent,
        sysconfig.get_paths()["stdlib"],
    )
)


@functools.lru_cache(maxsize=4096)
def is_yours(filename: str) -> bool:
    if filename.startswith("<frozen "):  # the standard library's frozen modules: <frozen os>
        return False
    return not os.path.realpath(filename).startswith(_NOT_YOURS)


def _your_line(err: BaseException) -> str:
    """Where in the learner's own code an exception was raised, as one line for the message ('' if
    nowhere)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if is_yours(f.filename)]
    if not frames:
        return ""
    last = frames[-1]
    return f"\n  In your code: {last.name}, line {last.lineno}" + (
        f": {last.line.strip()}" if last.line else ""
    )


def _from_your_code(tb):
    """The traceback from the learner's first frame on, without the checks' and torch's frames
    before it."""
    while tb is not None and not is_yours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


class CheckFailed(AssertionError):
    """A check's failure as the learner meets it. In IPython and Jupyter it shows its message alone:
    IPython hides frames that set __tracebackhide__, but never the one that raised, and that frame
    is the checks' own (learner_facing's); an exception's _render_traceback_ replaces the whole
    traceback there. Elsewhere (pytest, make check, a script) it is an AssertionError like any."""

    def _render_traceback_(self) -> list[str]:
        return [wrap_lines(f"AssertionError: {self}")]  # lines that fit the output area


class CheckUsageError(TypeError):
    """A check called with the wrong thing (a tensor, a class where a function is wanted): one
    line in IPython and Jupyter, as a CheckFailed is; a TypeError elsewhere."""

    def _render_traceback_(self) -> list[str]:
        return [wrap_lines(f"TypeError: {self}")]


def learner_facing(check):
    """A check as the learner meets it: on failure, the message alone (the checks' own frames
    hidden, in IPython and pytest); for an exercise stub, its NotImplementedError raised from the
    stub's own line."""

    @functools.wraps(check)
    def run_check(*args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 (read by IPython and pytest)
        try:
            return check(*args, **kwargs)
        except AssertionError as err:
            raise CheckFailed(str(err)) from None
        except CheckUsageError as err:
            raise err.with_traceback(None) from None
        except NotImplementedError as err:
            raise err.with_traceback(
                _from_your_code(err.__traceback__) or err.__traceback__
            ) from None

    return run_check
