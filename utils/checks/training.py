"""Notebook 03's checks: lr_at, make_optimizer, optimizer_step and next_token_accuracy, against the
reference in utils/training.py.

Each known mistake is reproduced by a small reference below that can make it (the `mistake=`
argument), as notebook 02's layer checks do with their functional GPT-2; a failing check names the
first mistake that gives what the learner's code gave.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import replace

import numpy as np
import torch

from utils.printing import print_wrapped
from utils.checks.core import (
    as_number,
    call_learner,
    fail,
    known_mistake,
    learner_facing,
    mistakes_in,
    recognise,
)
from utils.checks.model import CHECK_CFG
from utils.model import next_token_loss

# --------------------------------------------------------------------------- known mistakes

LR_WARMUP_FROM_ZERO = known_mistake(
    "lr_warmup_from_zero",
    "lr_at",
    "the warmup starts at 0 (lr * step / warmup_steps), so step 0 learns nothing; "
    "use (step + 1) / warmup_steps.",
)
LR_FLOOR_DIVISION = known_mistake(
    "lr_floor_division",
    "lr_at",
    "// is floor division: it rounds down to a whole number (lr * (step + 1) // warmup_steps is 0 "
    "for any lr below 1, a progress (step - warmup_steps) // (max_steps - warmup_steps) is 0 "
    "until the end). Use /.",
)
LR_DECAY_TO_ZERO = known_mistake(
    "lr_decay_to_zero", "lr_at", "the decay ends at 0 instead of lr * min_lr_ratio."
)
LR_NO_WARMUP = known_mistake(
    "lr_no_warmup",
    "lr_at",
    "there is no warmup: for step < warmup_steps, use lr * (step + 1) / warmup_steps.",
)
LR_LINEAR_DECAY = known_mistake(
    "lr_linear_decay",
    "lr_at",
    "the decay is linear, not cosine: lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + cos(pi "
    "* progress))).",
)
LR_PROGRESS_FROM_ZERO = known_mistake(
    "lr_progress_from_zero",
    "lr_at",
    "the cosine's progress counts from step 0, not from the end of warmup: (step - warmup_steps) "
    "/ (max_steps - warmup_steps).",
)
LR_UNCLAMPED = known_mistake(
    "lr_unclamped", "lr_at", "after max_steps the cosine comes back up: clamp the progress at 1."
)
DECAY_BY_NDIM = known_mistake(
    "decay_by_ndim",
    "make_optimizer",
    "the 'decay tensors with ndim >= 2' rule. Here b_Q, b_K and b_V are [n_heads, d_head]: "
    "two-dimensional, but biases. Decide by the name: name.split('.')[-1].startswith('W_').",
)
OPTIMIZER_TRAINS_FROZEN = known_mistake(
    "optimizer_trains_frozen",
    "make_optimizer",
    "frozen parameters (requires_grad False) are handed to the optimizer. Skip them, as the "
    "exercise asks: [(name, p) for name, p in model.named_parameters() if p.requires_grad]; "
    "whoever froze a parameter means it to stay as it is.",
)
STEP_ZERO_GRAD_FIRST = known_mistake(
    "step_zero_grad_first",
    "optimizer_step",
    "the gradients are cleared before loss.backward(), which throws away the earlier "
    "micro-batches' gradients (gradient accumulation): clear them after optimizer.step() instead.",
)
STEP_NO_ZERO_GRAD = known_mistake(
    "step_no_zero_grad",
    "optimizer_step",
    "the gradients are never cleared, so the next step adds this step's gradients again: call "
    "optimizer.zero_grad(set_to_none=True) after optimizer.step().",
)
STEP_BEFORE_BACKWARD = known_mistake(
    "step_before_backward",
    "optimizer_step",
    "optimizer.step() ran before loss.backward(): the step changed the weights in place, and "
    "backward still needed them as they were (PyTorch's 'modified by an inplace operation'). The "
    "order: loss.backward(), clip, optimizer.step(), optimizer.zero_grad().",
    raises=RuntimeError,
    says="modified by an inplace operation",
)
STEP_ZERO_GRAD_BEFORE_STEP = known_mistake(
    "step_zero_grad_before_step",
    "optimizer_step",
    "optimizer.zero_grad() runs between loss.backward() and optimizer.step(): the step finds no "
    "gradients, and the weights never change. Clear them after the step.",
)
STEP_CLIP_BEFORE_BACKWARD = known_mistake(
    "step_clip_before_backward",
    "optimizer_step",
    "the gradients are clipped before loss.backward(), so what backward adds is never clipped: "
    "clip between backward and step.",
)
STEP_NO_CLIP = known_mistake(
    "step_no_clip",
    "optimizer_step",
    "the gradient norm is not clipped before optimizer.step() (clipping after the step changes "
    "nothing): torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip) between backward and "
    "step.",
)
STEP_CLIP_VALUE = known_mistake(
    "step_clip_value",
    "optimizer_step",
    "clip_grad_value_ clips each gradient entry separately; clip the total norm of all gradients "
    "together, torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip), "
    "which keeps the gradient's direction.",
)
STEP_CLIP_AT_1 = known_mistake(
    "step_clip_at_1",
    "optimizer_step",
    "the norm is clipped to 1.0, not to grad_clip (the check uses grad_clip = 0.5): "
    "pass grad_clip.",
)
ACCURACY_NO_SHIFT = known_mistake(
    "accuracy_no_shift",
    "next_token_accuracy",
    "no shift: logits at position i predict token i + 1, so compare logits[:, "
    ":-1].argmax(-1) with tokens[:, 1:].",
)
ACCURACY_TARGETS_UNSHIFTED = known_mistake(
    "accuracy_targets_unshifted",
    "next_token_accuracy",
    "the logits lose their last position (logits[:, :-1]) but the targets are not shifted: "
    "position i predicts token i + 1, so compare with tokens[:, 1:].",
)
ACCURACY_SHIFT_REVERSED = known_mistake(
    "accuracy_shift_reversed",
    "next_token_accuracy",
    "the shift goes the wrong way: logits[:, 1:] against tokens[:, :-1] compares each prediction "
    "with the token before it. Logits at position i predict token i + 1: logits[:, :-1] "
    "against tokens[:, 1:].",
)
ACCURACY_COUNT = known_mistake(
    "accuracy_count",
    "next_token_accuracy",
    "a count, not a fraction: divide by the number of predictions.",
)
ACCURACY_TENSOR = known_mistake(
    "accuracy_tensor",
    "next_token_accuracy",
    "the accuracy is right, but a tensor: return a Python float, with .item() "
    "((...).float().mean().item()), as the function's -> float says.",
)


# --------------------------------------------------------------------------- lr_at


def _lr(step, args, mistake=None):
    """The schedule: linear warmup to args.lr, then cosine decay to args.lr * args.min_lr_ratio; or
    with a known mistake."""
    lr, warm, total, low = args.lr, args.warmup_steps, args.max_steps, args.min_lr_ratio
    if step < warm and mistake is LR_FLOOR_DIVISION:
        return lr * (step + 1) // warm
    if step < warm and mistake is not LR_NO_WARMUP:
        return lr * (step if mistake is LR_WARMUP_FROM_ZERO else step + 1) / warm
    if mistake is LR_PROGRESS_FROM_ZERO:
        progress = step / total
    elif mistake is LR_FLOOR_DIVISION:
        progress = (step - warm) // max(1, total - warm)
    else:
        progress = (step - warm) / max(1, total - warm)
    if mistake is not LR_UNCLAMPED:
        progress = min(1.0, progress)
    floor = 0.0 if mistake is LR_DECAY_TO_ZERO else low
    shape = 1 - progress if mistake is LR_LINEAR_DECAY else 0.5 * (1 + math.cos(math.pi * progress))
    return lr * (floor + (1 - floor) * shape)


@learner_facing
def check_lr_at(fn) -> None:
    """`fn(step, args)` must give linear warmup to args.lr, then cosine decay to args.lr *
    args.min_lr_ratio at args.max_steps."""
    from utils.training import TrainingArgs, lr_at as reference

    settings = [
        TrainingArgs(lr=1e-3, warmup_steps=10, max_steps=100, min_lr_ratio=0.1),
        TrainingArgs(lr=6e-4, warmup_steps=3, max_steps=40, min_lr_ratio=0.0),
        TrainingArgs(lr=1e-3, warmup_steps=5, max_steps=5, min_lr_ratio=0.1),
        TrainingArgs(lr=2e-3, warmup_steps=0, max_steps=20, min_lr_ratio=0.1),
    ]  # the third has no decay phase (max_steps - warmup_steps = 0), the fourth no warmup
    # rel_tol 1e-5: a schedule computed in float32 (torch.cos on a float32 tensor) is right to about
    # 4e-6
    same = lambda got, value: (
        got is not None and math.isclose(got, value, rel_tol=1e-5, abs_tol=1e-12)
    )  # noqa: E731
    for args in settings:
        steps = range(args.max_steps + 10)
        for step in steps:
            got = call_learner(fn, step, args, what=f"lr_at({step}, args)")
            want, value = reference(step, args), as_number(got)
            if args.max_steps <= args.warmup_steps <= step and same(
                value, args.lr * args.min_lr_ratio
            ):
                # no decay phase: the reference takes its progress as 0 (max(1, 0) steps), a
                # schedule that takes it as 1 (the decay already done) is right too
                continue
            if not same(value, want):
                # a mistake is recognised by the whole phase (warmup or decay) it gives: at one
                # step, several give the same value (0 at step 0, say)
                phase = range(args.warmup_steps) if step < args.warmup_steps else steps[step:]
                values = [
                    as_number(call_learner(fn, s, args, what=f"lr_at({s}, args)")) for s in phase
                ]
                fail(
                    f"lr_at({step}, args) = {got if value is None else value!r}, "
                    f"expected {want:.6g} (lr={args.lr}, warmup_steps={args.warmup_steps}, "
                    f"max_steps={args.max_steps}, min_lr_ratio={args.min_lr_ratio}).",
                    recognise(
                        values,
                        mistakes_in("lr_at"),
                        lambda m: [[_lr(s, args, m) for s in phase]],
                        lambda a, b: all(map(same, a, b)),
                    ),
                    "warmup lr * (step + 1) / warmup_steps; then progress = (step - warmup_steps) "
                    "/ (max_steps - warmup_steps), clamped to 1; lr * (min_lr_ratio + (1 - "
                    "min_lr_ratio) * 0.5 * (1 + cos(pi * progress))).",
                )
    print_wrapped(
        f"lr_at passed: every step of {len(settings)} schedules, including past max_steps"
    )


# --------------------------------------------------------------------------- make_optimizer


def _tiny_model(seed=0):
    from utils.model import DemoTransformer

    torch.manual_seed(seed)
    return DemoTransformer(replace(CHECK_CFG, n_layers=1, d_vocab=50, n_ctx=8))


def _is_weight(name: str) -> bool:
    """Weight matrices and embeddings are named W_... (TransformerLens's names); biases b_...,
    LayerNorm's w and b are not."""
    return name.split(".")[-1].startswith("W_")


def _decayed(model, mistake=None) -> dict[str, bool]:
    """Which trained parameters get weight decay: the weight matrices and embeddings; or with a
    known mistake."""
    return {
        name: p.ndim >= 2 if mistake is DECAY_BY_NDIM else _is_weight(name)
        for name, p in model.named_parameters()
        if p.requires_grad
    }


ADAMW_DEFAULTS = {"eps": 1e-8, "amsgrad": False, "maximize": False}


def _require_known_keys(group: dict, defaults: dict) -> None:
    """A misspelt option in a parameter group ("weight decay") is kept by AdamW without an error,
    and its default used in its place: name it."""
    known = [*defaults, "params", "param_names", "initial_lr"]
    for key in group:
        if key in known or not isinstance(key, str):
            continue
        meant = difflib.get_close_matches(key.lower().replace(" ", "_"), known, n=1, cutoff=0.75)
        if meant:
            fail(
                f"make_optimizer: a parameter group has the key {key!r}, which AdamW does not "
                f"know: it keeps it without an error and uses its own {meant[0]} "
                f"({defaults.get(meant[0])!r}) instead. Write {meant[0]!r}."
            )


@learner_facing
def check_make_optimizer(fn) -> None:
    """`fn(model, args)` must return AdamW with weight decay on the weight matrices and embeddings
    (W_...) only, every parameter once."""
    from utils.training import TrainingArgs

    model = _tiny_model()
    model.blocks[0].attn.b_Q.requires_grad_(False)  # frozen: it must not be in the optimizer
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    args = TrainingArgs(lr=3e-4, weight_decay=0.05, betas=(0.85, 0.98))  # not AdamW's defaults
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = call_learner(fn, model, args, what="make_optimizer(model, args)")
    refrozen = [
        name for name, p in model.named_parameters() if p.requires_grad != (name not in frozen)
    ]
    if refrozen:
        fail(
            f"make_optimizer changed requires_grad of {', '.join(refrozen[:4])}"
            f"{' ...' if len(refrozen) > 4 else ''}: which parameters train is the caller's "
            "choice; build the groups from the model as it is (skip those with requires_grad "
            "False) without changing it"
        )
    edited = [name for name, p in model.named_parameters() if not torch.equal(p, weights[name])]
    if edited:
        fail(
            f"make_optimizer changed the weights of {', '.join(edited[:4])}"
            f"{' ...' if len(edited) > 4 else ''}: it only builds the optimizer; AdamW applies the "
            "decay itself, at every step"
        )
    if not isinstance(optimizer, torch.optim.AdamW):
        fail(f"make_optimizer must return torch.optim.AdamW, got {type(optimizer).__name__}")
    names = {id(p): name for name, p in model.named_parameters()}
    seen, wrong, decayed = {}, [], {}
    for group in optimizer.param_groups:
        _require_known_keys(group, optimizer.defaults)
        for p in group["params"]:
            name = names.get(id(p), "a tensor that is not one of the model's parameters")
            if id(p) in seen:
                fail(
                    f"make_optimizer: {name} is in two parameter groups; "
                    "each parameter must appear once."
                )
            seen[id(p)] = name
            decayed[name] = group["weight_decay"] != 0
            should = args.weight_decay if _is_weight(name) else 0.0
            if group["weight_decay"] != should:
                wrong.append(
                    f"{name} ({'a weight matrix' if _is_weight(name) else 'not a weight matrix'}) "
                    f"has weight_decay {group['weight_decay']}, expected {should}"
                )
        if group["lr"] != args.lr or tuple(group["betas"]) != tuple(args.betas):
            fail(
                f"make_optimizer: a group has lr {group['lr']} and betas {group['betas']}; "
                "use args.lr and args.betas."
            )
        # AdamW's defaults for the rest of its arithmetic: another eps, amsgrad or maximize is
        # another optimizer than the one notebook 03 trains with
        changed = {
            key: group.get(key)
            for key, default in ADAMW_DEFAULTS.items()
            if group.get(key) != default
        }
        if changed:
            fail(
                f"make_optimizer: a group sets {changed}; leave AdamW's "
                f"{', '.join(f'{key}={value}' for key, value in ADAMW_DEFAULTS.items())} as they "
                "are (pass only the groups, lr and betas)."
            )
    missing = [name for name in names.values() if name not in seen.values() and name not in frozen]
    if missing:
        fail(f"make_optimizer: these parameters are not being trained: {missing}")
    right_pattern = {
        name: decay for name, decay in decayed.items() if name not in frozen
    } == _decayed(model)
    if wrong and right_pattern:
        fail(
            "make_optimizer: the right parameters are decayed, but with weight_decay "
            f"{sorted({group['weight_decay'] for group in optimizer.param_groups} - {0.0})}, "
            f"expected args.weight_decay ({args.weight_decay}): pass it as it is"
        )
    if wrong:
        fail(
            [
                "make_optimizer: " + "; ".join(wrong[:4]) + (" ..." if len(wrong) > 4 else ""),
                "  Decay the weight matrices and embeddings (W_...), not biases (b_...) or "
                "LayerNorm's w and b.",
            ],
            recognise(
                {name: decay for name, decay in decayed.items() if name not in frozen},
                mistakes_in("make_optimizer"),
                lambda m: _decayed(model, m),
                lambda a, b: a == b,
            ),
        )
    trained_frozen = [name for name in frozen if name in seen.values()]
    if trained_frozen:
        fail(
            f"make_optimizer: {', '.join(trained_frozen)} "
            f"{'is' if len(trained_frozen) == 1 else 'are'} frozen (requires_grad False), "
            "yet in the optimizer's parameter groups.",
            OPTIMIZER_TRAINS_FROZEN,
        )
    n_weights = sum(_decayed(model).values())
    print_wrapped(
        f"make_optimizer passed: {len(seen)} parameters, decay on the {n_weights} weight matrices "
        "and embeddings (W_...) only, the frozen one left out"
    )


# --------------------------------------------------------------------------- optimizer_step


def _reference_step(model, optimizer, loss, clip, mistake=None):
    """backward, clip the gradient norm, step, clear the gradients; or with a known mistake."""
    if mistake is STEP_ZERO_GRAD_FIRST:
        optimizer.zero_grad()
    if mistake is STEP_CLIP_BEFORE_BACKWARD:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    loss.backward()
    if mistake is STEP_CLIP_VALUE:
        torch.nn.utils.clip_grad_value_(model.parameters(), clip)
    elif mistake not in (STEP_NO_CLIP, STEP_CLIP_BEFORE_BACKWARD):
        torch.nn.utils.clip_grad_norm_(
            model.parameters(), 1.0 if mistake is STEP_CLIP_AT_1 else clip
        )
    if mistake is STEP_ZERO_GRAD_BEFORE_STEP:
        optimizer.zero_grad()
    optimizer.step()
    if mistake is not STEP_NO_ZERO_GRAD:
        optimizer.zero_grad()
    return loss.detach()


def _steps_with(step_fn, what=None, clip=0.5):
    """Three SGD steps, each over two micro-batches: the check runs the first micro-batch's
    backward, then `step_fn` gets the second one's loss (SGD shows clipping and lost or leftover
    gradients; AdamW would hide them). `what` names a learner's step_fn in messages. Returns the
    weights, the values step_fn returned and the second micro-batches' losses."""
    model = _tiny_model()
    params = list(
        model.parameters()
    )  # two groups, as make_optimizer makes: clipping must cover every group
    optimizer = torch.optim.SGD(
        [
            {"params": [p for p in params if p.ndim >= 2]},
            {"params": [p for p in params if p.ndim < 2]},
        ],
        lr=0.5,
    )
    tokens = torch.randint(0, 50, (4, 8), generator=torch.Generator().manual_seed(0))
    returned, losses = [], []
    # scaled so that the gradient norm is well above `clip` twice, then well below it (about 0.12
    # against 0.5): clipping must then leave the gradients as they are
    for scale in (30.0, 10.0, 0.02):
        (
            scale * next_token_loss(model(tokens[:2]), tokens[:2])
        ).backward()  # an earlier micro-batch
        loss = scale * next_token_loss(model(tokens[2:]), tokens[2:])
        losses.append(loss.item())
        args = (model, optimizer, loss, clip)
        returned.append(
            call_learner(step_fn, *args, what=what, known=[STEP_BEFORE_BACKWARD])
            if what
            else step_fn(*args)
        )
    return torch.cat([p.detach().flatten() for p in model.parameters()]), returned, losses


@learner_facing
def check_optimizer_step(fn) -> None:
    """`fn(model, optimizer, loss, grad_clip)` must backpropagate (adding to gradients already
    there), clip the gradient norm, step, clear the gradients, and return the loss detached."""
    from utils.training import optimizer_step as reference

    expected = _steps_with(reference)[0]
    got, returned, losses = _steps_with(
        fn, what="optimizer_step(model, optimizer, loss, grad_clip)"
    )
    value = returned[0]
    if isinstance(value, torch.Tensor) and value.requires_grad:
        fail("optimizer_step returned the loss still attached to its graph; return loss.detach()")
    number = (
        value
        if isinstance(value, float)
        else as_number(value)
        if isinstance(value, torch.Tensor)
        else None
    )
    if number is None or not math.isclose(number, losses[0], rel_tol=1e-5):
        fail(
            "optimizer_step must return the loss it was given, detached (loss.detach()); "
            f"it returned {value!r}, the loss was {losses[0]:.6g}"
        )
    same = lambda a, b: torch.allclose(a, b, rtol=1e-4, atol=1e-6)  # noqa: E731
    if not same(got, expected):

        def reproduce(mistake):
            if mistake.raises is not None:  # recognised by its error, in call_learner
                return None
            return _steps_with(lambda *args: _reference_step(*args, mistake=mistake))[0]

        fail(
            "optimizer_step: after three steps the weights differ from the reference (largest "
            f"difference {(got - expected).abs().max().item():.3g}).",
            recognise(got, mistakes_in("optimizer_step"), reproduce, same),
            "loss.backward(), then torch.nn.utils.clip_grad_norm_(model.parameters(), "
            "grad_clip) with the grad_clip given, then optimizer.step() once, "
            "then optimizer.zero_grad().",
        )
    note = (
        (
            "\n  (It returns a Python float: that works, but on a GPU .item() makes the CPU wait "
            "for the GPU every step; return loss.detach() instead.)"
        )
        if isinstance(value, float)
        else ""
    )
    print_wrapped(
        "optimizer_step passed: three SGD steps over two micro-batches each, clipped twice and "
        "once below the clip, give the reference weights and leave no gradients" + note
    )


# --------------------------------------------------------------------------- next_token_accuracy


def _accuracy(logits, tokens, mistake=None) -> float:
    """The fraction of positions whose argmax logit is the next token; or with a known mistake."""
    if mistake is ACCURACY_NO_SHIFT:
        return (logits.argmax(-1) == tokens).float().mean().item()
    if mistake is ACCURACY_TARGETS_UNSHIFTED:
        return (logits[:, :-1].argmax(-1) == tokens[:, :-1]).float().mean().item()
    if mistake is ACCURACY_SHIFT_REVERSED:
        return (logits[:, 1:].argmax(-1) == tokens[:, :-1]).float().mean().item()
    right = logits[:, :-1].argmax(-1) == tokens[:, 1:]
    return float(right.sum()) if mistake is ACCURACY_COUNT else right.float().mean().item()


@learner_facing
def check_next_token_accuracy(fn) -> None:
    """`fn(logits, tokens)` must give the fraction of positions whose argmax logit is the NEXT
    token."""
    from utils.training import next_token_accuracy as reference

    # seed 4: each known mistake gives an accuracy of its own (with seed 0, two gave 2 of 24)
    generator = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, 7, (3, 9), generator=generator)
    logits = torch.randn(3, 9, 7, generator=generator)
    logits[:, :-1].scatter_add_(
        -1,
        tokens[:, 1:, None],
        torch.where(torch.rand(3, 8, 1, generator=generator) < 0.6, 10.0, 0.0),
    )
    expected = reference(logits, tokens)
    got = call_learner(
        fn, logits, tokens, what="next_token_accuracy(logits, tokens)", leaves_unchanged="all"
    )
    if isinstance(got, torch.Tensor):
        value = as_number(got)
        if value is not None and math.isclose(value, expected, rel_tol=1e-6):
            fail(
                f"next_token_accuracy returned {got!r}, a tensor of shape {tuple(got.shape)}; "
                f"expected the Python float {expected:.6f}.",
                ACCURACY_TENSOR,
            )
    if isinstance(got, np.generic) and not isinstance(got, float):
        value = as_number(got)
        if value is not None and math.isclose(value, expected, rel_tol=1e-6):
            fail(
                f"next_token_accuracy returned {got!r}, a numpy number; expected the Python float "
                f"{expected:.6f}: float(...), or stay in torch and end with .item()."
            )
    if not isinstance(got, float) or not math.isclose(got, expected, rel_tol=1e-6):
        same = lambda a, b: isinstance(a, (int, float)) and math.isclose(a, b, rel_tol=1e-6)  # noqa: E731
        fail(
            f"next_token_accuracy returned {got!r}, expected {expected:.6f} (a Python float "
            "between 0 and 1).",
            recognise(
                as_number(got) if isinstance(got, torch.Tensor) else got,
                mistakes_in("next_token_accuracy"),
                lambda m: _accuracy(logits, tokens, m),
                same,
            ),
            "compare logits[:, :-1].argmax(-1) with tokens[:, 1:], and return the fraction that "
            "agree as a Python float.",
        )
    print_wrapped(
        f"next_token_accuracy passed: {expected:.1%} on a batch built to have a known accuracy"
    )
