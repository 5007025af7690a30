"""The conveniences and guards around notebook 05's hook points, as TransformerLens has them.

Notebook 05 teaches `HookPoint` and `run_with_cache`; this module holds what makes them pleasant
and safe to use, none of which a learner needs to read to understand hooks:

* `HookMethods`, mixed into `HookedDemoTransformer`: `from_model`, `hook_points()`,
  `run_with_hooks`, the `hooks()` context manager (hooks removed also when the block raises),
  `reset_hooks()`, and `matching_names`, which turns a names filter into hook names and refuses
  unknown names (a typo would otherwise record nothing, silently);
* `ActivationCache`, indexable by full names and by TransformerLens's short forms
  (`cache["pattern", 0]`, `cache["resid_post", -1]`, `cache["scale", 0, "ln1"]`), and `act_name`;
* the guards a hook point runs: a hook function must take `(activation, hook)`; a replacement
  must have the activation's shape, dtype and device; a hook that runs the model again (which
  would reach that hook again, without end) is refused.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
import operator
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch.nn as nn
from torch import Tensor

NamesFilter = "str | tuple | Iterable[str] | Callable[[str], bool] | None"


# ------------------------------------------------------------------ what a hook point checks
def check_hook_fn(fn) -> None:
    """A TypeError unless fn can be called as fn(activation, hook=hook_point), as hook points do."""
    name = getattr(fn, "__name__", type(fn).__name__)
    if isinstance(fn, type):
        raise TypeError(f"a hook function is a function fn(activation, hook), got the class {name}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some built-in callables have none: the call itself will say
        return
    try:
        signature.bind(None, hook=None)
    except TypeError:
        example = (
            "lambda activation, hook: ..."
            if name == "<lambda>"
            else f"def {name}(activation, hook)"
        )
        raise TypeError(
            f"the hook function {name}{signature} cannot be called as fn(activation, hook="
            f"hook_point), which is how hook points call it: give it two parameters, the second "
            f"named hook, e.g. {example}"
        ) from None


def checked_replacement(point, hook, activation: Tensor, result) -> Tensor:
    """`result`, what `hook` returned at hook point `point`, if it can replace `activation`."""
    name = getattr(hook, "__name__", repr(hook))
    if not isinstance(result, Tensor):
        raise TypeError(
            f"the hook {name} on {point.name!r} returned a {type(result).__name__}; a hook returns "
            f"None (to keep the activation) or a tensor of its shape {tuple(activation.shape)}"
        )
    if result.shape != activation.shape:
        raise ValueError(
            f"the hook {name} on {point.name!r} returned shape {tuple(result.shape)}; a "
            f"replacement must have the activation's shape {tuple(activation.shape)}"
        )
    if result.dtype != activation.dtype or result.device != activation.device:
        raise TypeError(
            f"the hook {name} on {point.name!r} returned a {result.dtype} tensor on "
            f"{result.device}; a replacement must have the activation's dtype and device, "
            f"{activation.dtype} on {activation.device}: return result.to(activation)"
        )
    return result


@contextmanager
def not_reentered(point) -> Iterator[None]:
    """Around a hook point's hooks: reaching the same point again while they run means that a hook
    ran the model, whose forward pass would reach that hook again, without end."""
    if getattr(point, "_running", False):
        raise RuntimeError(
            f"a hook on {point.name!r} ran the model (model(...), run_with_hooks or run_with_cache "
            f"inside a hook function), whose forward pass reached {point.name!r} and that hook "
            f"again, without end; run the model before or after the hooked run, not inside a hook"
        )
    point._running = True
    try:
        yield
    finally:
        point._running = False


# ------------------------------------------------------------------ names
ATTN_NAMES = ("q", "k", "v", "z", "attn_scores", "pattern")
MLP_NAMES = ("pre", "post")
BLOCK_NAMES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
LN_NAMES = ("scale", "normalized")
ALIASES = {
    "attn": "pattern",
    "attn_logits": "attn_scores",
    "query": "q",
    "key": "k",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_post": "post",
}
# the order in which a forward pass reaches a block's hook points (TransformerLens's order)
_BLOCK_ORDER = [
    "hook_resid_pre",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
]
_TOP_ORDER = ["hook_embed", "hook_pos_embed", "blocks", "ln_final.hook_scale"]
_TOP_ORDER += ["ln_final.hook_normalized", "unembed.hook_in", "unembed.hook_out"]


def forward_order(name: str) -> tuple:
    """A sort key: hook names in the order a forward pass reaches them."""
    if name.startswith("blocks."):
        _, layer, rest = name.split(".", 2)
        return (_TOP_ORDER.index("blocks"), int(layer), _BLOCK_ORDER.index(rest))
    return (_TOP_ORDER.index(name), 0, 0)


def act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """The full hook name for TransformerLens's short form: act_name("pattern", 0) ==
    "blocks.0.attn.hook_pattern". A negative layer is not resolved here (the cache does that)."""
    if not isinstance(name, str):
        hint = "; for a short name with its layer give a tuple, e.g. ('pattern', 0)"
        raise TypeError(
            f"a hook name is a str such as 'pattern' or 'blocks.0.attn.hook_pattern', got "
            f"{name!r}{hint if isinstance(name, list) else ''}"
        )
    if layer is not None and (
        isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or layer < 0
    ):
        raise KeyError(
            f"layer must be an int from 0 (act_name does not resolve a negative layer; cache[name, "
            f"-1] does), got {layer!r}"
        )
    if layer is None and layer_type is None and ("." in name or name.startswith("hook_")):
        return name  # already a full name
    name = ALIASES.get(name, name)
    if name in ("embed", "pos_embed"):
        if layer is not None or layer_type is not None:
            raise KeyError(
                f"{name!r} is not in a block: give it without a layer, e.g. cache[{name!r}]"
            )
        return f"hook_{name}"
    if name in LN_NAMES:
        if layer is None:
            if layer_type is not None:  # else ln_final's, silently
                raise KeyError(
                    f"layer_type {layer_type!r} needs a layer too, e.g. cache[{name!r}, 0, "
                    f"{layer_type!r}]; without both {name!r} is ln_final's"
                )
            return f"ln_final.hook_{name}"
        if layer_type not in ("ln1", "ln2"):
            raise ValueError(
                f"{name!r} with a layer needs layer_type 'ln1' or 'ln2' (which LayerNorm of the "
                f"block), e.g. cache[{name!r}, {layer}, 'ln1']; without a layer it is ln_final's"
            )
        return f"blocks.{layer}.{layer_type}.hook_{name}"
    where = (
        "attn."
        if name in ATTN_NAMES
        else "mlp."
        if name in MLP_NAMES
        else ""
        if name in BLOCK_NAMES
        else None
    )
    if where is None:
        known = ["embed", "pos_embed", *LN_NAMES, *ATTN_NAMES, *MLP_NAMES, *BLOCK_NAMES]
        raise KeyError(
            f"{name!r} is not a hook name; short names are {', '.join(known)} (with a layer for "
            f"all but embed and pos_embed), or give a full name such as "
            f"'blocks.0.attn.hook_pattern'"
        )
    if layer is None:
        raise KeyError(f"{name!r} is in every block: give the layer too, e.g. cache[{name!r}, 0]")
    if layer_type not in (None, where.rstrip(".") or None):
        raise KeyError(
            f"layer_type is for scale and normalized ('ln1' or 'ln2'); {name!r} has none, got "
            f"{layer_type!r}: cache[{name!r}, {layer}]"
        )
    return f"blocks.{layer}.{where}hook_{name}"


def no_such_hook(name: str, model: nn.Module) -> str:
    """The error message for a hook name the model does not have, with the closest it has."""
    points = list(model.hook_points())
    close = difflib.get_close_matches(name, points, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    mlp = (
        " (this model is attention-only: it has no ln2, MLP or resid_mid hook points)"
        if model.cfg.attn_only and any(part in name for part in ("mlp", "ln2", "resid_mid"))
        else ""
    )
    listing = f"model.hook_points() lists all {len(points)}"
    return f"{name!r} is not a hook point of this model{mlp}{hint} {listing}"


class ActivationCache:
    """The activations recorded by run_with_cache, by full hook name; also indexable by
    TransformerLens's short names."""

    def __init__(self, activations: dict[str, Tensor], model: nn.Module):
        if not isinstance(activations, dict):
            raise TypeError(
                "activations must be a dict of tensors by hook name, "
                f"got {type(activations).__name__}"
            )
        if not hasattr(model, "hook_points") or not hasattr(
            getattr(model, "cfg", None), "n_layers"
        ):
            raise TypeError(
                f"model must be the HookedDemoTransformer the activations come from, got "
                f"{type(model).__name__}"
            )
        self.activations = activations
        self.model = model

    def full_name(self, key) -> str:
        """The full hook name for a key: a full name, a short name ("scale") or a tuple
        ("pattern", 0) / ("scale", 0, "ln1")."""
        parts = key if isinstance(key, tuple) else (key,)
        if not 1 <= len(parts) <= 3:
            raise KeyError(
                f"a cache key is a name, (name, layer) or (name, layer, layer_type), e.g. "
                f"cache['pattern', 0]; got {key!r}"
            )
        name, *rest = parts
        layer = rest[0] if rest else None
        if layer is not None:
            n_layers = self.model.cfg.n_layers
            try:  # an int, a numpy int or a 0-d integer tensor; not a bool, a float or a str
                index = None if isinstance(layer, bool) else operator.index(layer)
            except TypeError:
                index = None
            if index is None or not -n_layers <= index < n_layers:
                raise KeyError(
                    f"layer must be an int from {-n_layers} to {n_layers - 1} (this model has "
                    f"{n_layers} blocks), got {layer!r} in {key!r}"
                )
            layer = index % n_layers
        return act_name(name, layer, rest[1] if len(rest) > 1 else None)

    def __getitem__(self, key) -> Tensor:
        name = self.full_name(key)
        if name not in self.activations:
            if name in self.model.hook_points():
                raise KeyError(
                    f"{name!r} was not recorded: "
                    "the names_filter given to run_with_cache left it out"
                )
            raise KeyError(no_such_hook(name, self.model))
        return self.activations[name]

    def __contains__(self, key) -> bool:
        try:
            return self.full_name(key) in self.activations
        except (KeyError, ValueError, TypeError):  # not a key this cache could hold
            return False

    def keys(self):
        return self.activations.keys()

    def values(self):
        return self.activations.values()

    def items(self):
        return self.activations.items()

    def __iter__(self) -> Iterator[str]:
        return iter(self.activations)

    def __len__(self) -> int:
        return len(self.activations)

    def __repr__(self) -> str:
        first = ", ".join(list(self.activations)[:4])
        return (
            f"ActivationCache with {len(self)} activations: "
            f"{first}{', ...' if len(self) > 4 else ''}"
        )


# ------------------------------------------------------------------ the model's hook methods
class HookMethods:
    """Mixed into HookedDemoTransformer: finding hook points and attaching functions to them."""

    def name_hook_points(self) -> None:
        """Give every hook point its full name, and list them in the order a forward pass reaches
        them (call at the end of __init__)."""
        # notebook 05's HookPoints: the modules with a list of hook functions
        points = {
            n: m for n, m in self.named_modules() if isinstance(getattr(m, "hooks", None), list)
        }
        self._hook_points = {name: points[name] for name in sorted(points, key=forward_order)}
        for name, point in self._hook_points.items():
            point.name = name

    def hook_points(self) -> dict:
        """Every hook point, by full name, in the order a forward pass reaches them."""
        return self._hook_points

    @classmethod
    def from_model(cls, model: nn.Module):
        """A hooked copy of `model` (a DemoTransformer, FusedTransformer or your own class with
        their state dict), on its device, in its dtype and its train/eval mode."""
        model = getattr(model, "_orig_mod", model)  # a torch.compile'd model: the module inside it
        if not isinstance(model, nn.Module) or not hasattr(getattr(model, "cfg", None), "n_layers"):
            raise TypeError(
                f"model must be a DemoTransformer (or another model with a Config as .cfg), got "
                f"{type(model).__name__}"
            )
        weight = next(model.parameters(), None)
        if weight is None:
            raise ValueError(
                f"model ({type(model).__name__}) has no parameters: no weights to copy"
            )
        hooked = cls(model.cfg).to(device=weight.device, dtype=weight.dtype)
        result = hooked.load_state_dict(model.state_dict(), strict=False)
        if result.missing_keys or result.unexpected_keys:
            problems = [
                f"{label} {', '.join(sorted(keys)[:4])}"
                for label, keys in (
                    ("lacks", result.missing_keys),
                    ("has extra", result.unexpected_keys),
                )
                if keys
            ]
            raise ValueError(
                f"model ({type(model).__name__}) does not hold DemoTransformer's weights: it "
                f"{' and '.join(problems)}; its weights would be left behind"
            )
        for name, parameter in hooked.named_parameters():  # frozen stays frozen
            parameter.requires_grad_(model.get_parameter(name).requires_grad)
        return hooked.train(model.training)

    def matching_names(self, names: NamesFilter) -> list[str]:
        """The hook names a filter selects: None (all), a name, a list of names (full or short,
        e.g. ("pattern", 0)), or a function name -> bool. Unknown names are an error, so that a
        typo does not silently record nothing."""
        if names is None:
            return list(self._hook_points)
        if callable(names):
            return [name for name in self._hook_points if names(name)]
        if isinstance(names, (str, tuple)):
            names = [names]
        if not isinstance(names, Iterable):
            raise TypeError(
                f"names must be None, a hook name, a list of hook names or a function name -> "
                f"bool, got {names!r}"
            )
        names = list(names)
        if any(isinstance(n, str) for n in names) and any(isinstance(n, int) for n in names):
            raise TypeError(
                f"names {names!r} mix names and numbers: for a short name with its layer give a "
                f"tuple, e.g. ('pattern', 0) or [('pattern', 0), ('pattern', 1)]"
            )
        resolver = ActivationCache({}, self)
        full = [resolver.full_name(name) for name in names]
        for name in full:
            if name not in self._hook_points:
                raise ValueError(no_such_hook(name, self))
        return full

    @contextmanager
    def hooks(self, fwd_hooks):
        """Attach hooks for the duration of a `with` block: [(name or filter, hook_fn), ...].
        They are removed when the block ends, also when it raises."""
        if isinstance(fwd_hooks, tuple) and len(fwd_hooks) == 2 and callable(fwd_hooks[1]):
            fwd_hooks = [fwd_hooks]  # one (name, fn) pair without the list around it
        if not isinstance(fwd_hooks, (list, tuple)):
            raise TypeError(
                f"fwd_hooks must be a list of (name, hook_fn) pairs, got {type(fwd_hooks).__name__}"
            )
        attached = []
        try:
            for pair in fwd_hooks:
                if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and callable(pair[1])):
                    raise TypeError(
                        f"each entry of fwd_hooks must be a (name, hook_fn) pair with "
                        f"hook_fn(activation, hook), got {pair!r}"
                    )
                check_hook_fn(pair[1])
                names = self.matching_names(pair[0])
                if not names:
                    raise ValueError(f"the filter {pair[0]!r} matches no hook point of this model")
                for name in names:
                    self._hook_points[name].hooks.append(pair[1])
                    attached.append((self._hook_points[name], pair[1]))
            yield self
        finally:
            for point, fn in reversed(attached):
                if fn in point.hooks:  # a hook may have called reset_hooks()
                    point.hooks.remove(fn)

    def add_hook(self, name: NamesFilter, hook_fn) -> None:
        """Attach `hook_fn(activation, hook)` to the hook points `name` selects, until
        `reset_hooks()` (TransformerLens's add_hook; `hooks()` removes its hooks itself)."""
        check_hook_fn(hook_fn)
        names = self.matching_names(name)
        if not names:
            raise ValueError(f"the filter {name!r} matches no hook point of this model")
        for full in names:
            self._hook_points[full].hooks.append(hook_fn)

    def run_with_hooks(self, tokens: Tensor, fwd_hooks=()) -> Tensor:
        """The logits of one forward pass with these hooks attached; removed afterwards."""
        with self.hooks(fwd_hooks):
            return self(tokens)

    def reset_hooks(self) -> None:
        """Remove every hook attached to a hook point (PyTorch's hooks go with their handles)."""
        running = [n for n, point in self._hook_points.items() if getattr(point, "_running", False)]
        if running:  # the rest of this forward pass would run without the hooks it was given
            raise RuntimeError(
                f"reset_hooks() was called inside a hook on {running[0]!r}, during a forward pass; "
                f"call it before or after running the model (model.hooks(...) removes its hooks "
                f"itself when the run ends)"
            )
        for point in self._hook_points.values():
            point.hooks.clear()


def require_names_selected(names: list[str], names_filter) -> None:
    """run_with_cache with a filter that selects nothing would return an empty cache, which
    would only fail later, further from the cause."""
    if not names:
        raise ValueError(
            f"names_filter={names_filter!r} selects no hook point of this model, so nothing would "
            f"be recorded; model.hook_points() lists them"
        )
