"""GENERATED from notebooks/05_looking_inside.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/05_looking_inside.ipynb, code cell 2

import difflib
import inspect
import math
import operator
import tempfile
import warnings
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import einops
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

import utils.fused  # as modules: running this cell never replaces a class you pasted into this notebook
import utils.model
from utils.model import Float, Int


# --- notebooks/05_looking_inside.ipynb, code cell 3
HookFn = Callable[
    [Tensor, "HookPoint"], "Tensor | None"
]  # hook(activation, hook) -> None (keep it) or a replacement


class HookPoint(nn.Module):
    """An identity layer with a name: the functions attached to it see, and may replace, the activation passing through."""

    def __init__(self):
        super().__init__()
        self.name = ""  # its full name in the model, e.g. "blocks.0.attn.hook_pattern" (set by HookedDemoTransformer)
        self.hooks: list[HookFn] = []
        self._running = False  # True while this point's hooks run: reaching it again then means a hook ran the model

    @property
    def active(self) -> bool:
        """Whether anything is attached (our hook functions, or PyTorch forward hooks registered on this module)."""
        return bool(self.hooks or self._forward_hooks or self._forward_pre_hooks)

    def forward(self, activation: Tensor) -> Tensor:
        if self._running:  # a hook ran the model, whose forward pass reached this point and that hook again: without end
            raise RuntimeError(
                f"a hook on {self.name!r} ran the model (model(...), run_with_hooks or run_with_cache inside a hook "
                f"function), whose forward pass reached {self.name!r} and that hook again, without end; run the "
                f"model before or after the hooked run, not inside a hook"
            )
        self._running = True
        try:
            for hook in self.hooks:
                result = hook(activation, hook=self)
                if result is not None:
                    activation = self._checked_replacement(hook, activation, result)
        finally:
            self._running = False
        return activation

    def __call__(self, activation: Tensor) -> Tensor:
        # nothing attached: return the activation as it is, without nn.Module's call machinery (which costs microseconds)
        if self.hooks or self._forward_hooks or self._forward_pre_hooks:
            return super().__call__(activation)
        return activation

    def _checked_replacement(self, hook: HookFn, activation: Tensor, result) -> Tensor:
        name = getattr(hook, "__name__", repr(hook))
        if not isinstance(result, Tensor):
            raise TypeError(
                f"the hook {name} on {self.name!r} returned a {type(result).__name__}; a hook returns None (to keep "
                f"the activation) or a tensor of the activation's shape {tuple(activation.shape)}"
            )
        if result.shape != activation.shape:
            raise ValueError(
                f"the hook {name} on {self.name!r} returned shape {tuple(result.shape)}; a replacement must have "
                f"the activation's shape {tuple(activation.shape)}"
            )
        if (
            result.dtype != activation.dtype or result.device != activation.device
        ):  # else a deep error later, or silent rounding
            raise TypeError(
                f"the hook {name} on {self.name!r} returned a {result.dtype} tensor on {result.device}; a replacement "
                f"must have the activation's dtype and device, {activation.dtype} on {activation.device}: "
                f"return result.to(activation)"
            )
        return result

    def extra_repr(self) -> str:
        return f"name={self.name!r}, {len(self.hooks)} hook(s)"


def check_hook_fn(fn) -> None:
    """A TypeError unless fn can be called as fn(activation, hook=hook_point), which is how every hook point calls it."""
    name = getattr(fn, "__name__", type(fn).__name__)
    if isinstance(fn, type):
        raise TypeError(
            f"a hook function is a function fn(activation, hook), got the class {name}: pass a function"
        )
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
            f"the hook function {name}{signature} cannot be called as fn(activation, hook=hook_point), which is how hook "
            f"points call it: give it two parameters, the second named hook, e.g. {example}"
        ) from None


# --- notebooks/05_looking_inside.ipynb, code cell 4
class HookedLayerNorm(utils.fused.FusedLayerNorm):
    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_scale = HookPoint()  # [batch, posn, 1]
        self.hook_normalized = HookPoint()  # [batch, posn, d_model], before w and b

    def forward(
        self, residual: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        if not (
            self.hook_scale.active or self.hook_normalized.active
        ):  # PyTorch's fused layer norm: neither is ever in memory
            return super().forward(residual)
        centred = residual - residual.mean(dim=-1, keepdim=True)
        scale = self.hook_scale(
            (centred.pow(2).mean(dim=-1, keepdim=True) + self.cfg.layer_norm_eps).sqrt()
        )
        return self.hook_normalized(centred / scale) * self.w + self.b


class HookedAttention(utils.fused.FusedAttention):
    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_q, self.hook_k, self.hook_v = (
            HookPoint(),
            HookPoint(),
            HookPoint(),
        )  # [batch, posn, n_heads, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, n_heads, query_posn, key_posn]
        self.hook_pattern = HookPoint()  # [batch, n_heads, query_posn, key_posn]
        self.hook_z = HookPoint()  # [batch, posn, n_heads, d_head]

    def forward(
        self, x: Float[Tensor, "batch posn d_model"], cache=None, layer: int = 0
    ) -> Float[Tensor, "batch posn d_model"]:
        if (
            cache is not None
        ):  # generating with notebook 04's KV cache: the fused path, without hook points
            return self.forward_with_cache(x, cache, layer)
        q, k, v = self.project_qkv(x)  # each [batch, posn, n_heads, d_head]
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if (
            self.hook_attn_scores.active or self.hook_pattern.active
        ):  # notebook 02's explicit attention: the pattern exists
            scores = einops.einsum(
                q,
                k,
                "batch query_posn n_heads d_head, batch key_posn n_heads d_head -> batch n_heads query_posn key_posn",
            )
            scores = self.hook_attn_scores(
                self.apply_causal_mask(scores / math.sqrt(self.cfg.d_head))
            )
            pattern = self.hook_pattern(scores.softmax(dim=-1))
            z = einops.einsum(
                pattern,
                v,
                "batch n_heads query_posn key_posn, batch key_posn n_heads d_head -> batch query_posn n_heads d_head",
            )
        else:  # fused: the pattern is never written to memory
            z = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            ).transpose(1, 2)
        return self.project_out(self.hook_z(z))


class HookedMLP(utils.fused.FusedMLP):
    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # [batch, posn, d_mlp]

    def forward(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        pre = torch.addmm(self.b_in, x.reshape(-1, self.cfg.d_model), self.W_in).view(
            *x.shape[:-1], self.cfg.d_mlp
        )
        post = self.hook_post(utils.model.gelu_new(self.hook_pre(pre)))
        return torch.addmm(self.b_out, post.reshape(-1, self.cfg.d_mlp), self.W_out).view(x.shape)


class HookedUnembed(utils.fused.FusedUnembed):
    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_in, self.hook_out = (
            HookPoint(),
            HookPoint(),
        )  # [batch, posn, d_model], [batch, posn, d_vocab]

    def forward(
        self, normalized_resid_final: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_vocab"]:
        return self.hook_out(super().forward(self.hook_in(normalized_resid_final)))


class HookedTransformerBlock(utils.fused.FusedTransformerBlock):
    def __init__(self, cfg: utils.model.Config):
        nn.Module.__init__(
            self
        )  # the parameters in notebook 02's order, so that the same seed gives the same weights
        self.cfg = cfg
        self.hook_resid_pre = HookPoint()
        self.ln1, self.attn, self.hook_attn_out = (
            HookedLayerNorm(cfg),
            HookedAttention(cfg),
            HookPoint(),
        )
        if not cfg.attn_only:
            self.hook_resid_mid = HookPoint()
            self.ln2, self.mlp, self.hook_mlp_out = (
                HookedLayerNorm(cfg),
                HookedMLP(cfg),
                HookPoint(),
            )
        self.hook_resid_post = HookPoint()

    def forward(
        self, resid_pre: Float[Tensor, "batch posn d_model"], cache=None, layer: int = 0
    ) -> Float[Tensor, "batch posn d_model"]:
        if cache is not None:
            return super().forward(resid_pre, cache, layer)
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out = self.hook_attn_out(self.attn(self.ln1(resid_pre)))
        if self.cfg.attn_only:
            return self.hook_resid_post(resid_pre + attn_out)
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(resid_mid)))
        return self.hook_resid_post(resid_mid + mlp_out)


# --- notebooks/05_looking_inside.ipynb, code cell 5
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


def act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """The full hook name for TransformerLens's short form: act_name("pattern", 0) == "blocks.0.attn.hook_pattern".
    A negative layer is not resolved here (the cache does that, knowing n_layers)."""
    if not isinstance(name, str):
        hint = (
            "; for a short name with its layer give a tuple, e.g. ('pattern', 0)"
            if isinstance(name, list)
            else ""
        )
        raise TypeError(
            f"a hook name is a str such as 'pattern' or 'blocks.0.attn.hook_pattern', got {name!r}{hint}"
        )
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
        raise KeyError(
            f"layer must be an int from 0 (act_name does not resolve a negative layer; cache[name, -1] does), got {layer!r}"
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
                    f"layer_type {layer_type!r} needs a layer too, e.g. cache[{name!r}, 0, {layer_type!r}]; without both "
                    f"{name!r} is ln_final's"
                )
            return f"ln_final.hook_{name}"
        if layer_type not in ("ln1", "ln2"):
            raise ValueError(
                f"{name!r} with a layer needs layer_type 'ln1' or 'ln2' (which LayerNorm of the block), e.g. "
                f"cache[{name!r}, {layer}, 'ln1']; without a layer it is ln_final's"
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
            f"{name!r} is not a hook name; short names are {', '.join(known)} (with a layer for all but embed and "
            f"pos_embed), or give a full name such as 'blocks.0.attn.hook_pattern'"
        )
    if layer is None:
        raise KeyError(f"{name!r} is in every block: give the layer too, e.g. cache[{name!r}, 0]")
    if layer_type not in (None, where.rstrip(".") or None):
        raise KeyError(
            f"layer_type is for scale and normalized ('ln1' or 'ln2'); {name!r} has none, got {layer_type!r}: "
            f"cache[{name!r}, {layer}]"
        )
    return f"blocks.{layer}.{where}hook_{name}"


class ActivationCache:
    """The activations recorded by run_with_cache, by full hook name; also indexable by TransformerLens's short names."""

    def __init__(self, activations: dict[str, Tensor], model: nn.Module):
        if not isinstance(activations, dict):
            raise TypeError(
                f"activations must be a dict of tensors by hook name, got {type(activations).__name__}"
            )
        if not (
            hasattr(model, "hook_points")
            and isinstance(getattr(model, "cfg", None), utils.model.Config)
        ):
            raise TypeError(
                f"model must be the HookedDemoTransformer the activations come from, got {type(model).__name__}"
            )
        self.activations = activations
        self.model = model

    def full_name(self, key) -> str:
        """The full hook name for a key: a full name, a short name ("scale") or a tuple ("pattern", 0) / ("scale", 0, "ln1")."""
        parts = key if isinstance(key, tuple) else (key,)
        if not 1 <= len(parts) <= 3:
            raise KeyError(
                f"a cache key is a name, (name, layer) or (name, layer, layer_type), e.g. cache['pattern', 0]; got {key!r}"
            )
        name, *rest = parts
        layer = rest[0] if rest else None
        if layer is not None:
            n_layers = self.model.cfg.n_layers
            try:  # an int, a numpy int or a 0-d integer tensor; not a bool (True would be layer 1), a float or a str
                index = None if isinstance(layer, bool) else operator.index(layer)
            except TypeError:
                index = None
            if index is None or not -n_layers <= index < n_layers:
                raise KeyError(
                    f"layer must be an int from {-n_layers} to {n_layers - 1} (this model has {n_layers} blocks), "
                    f"got {layer!r} in {key!r}"
                )
            layer = index % n_layers
        return act_name(name, layer, rest[1] if len(rest) > 1 else None)

    def __getitem__(self, key) -> Tensor:
        name = self.full_name(key)
        if name not in self.activations:
            if name in self.model.hook_points():
                raise KeyError(
                    f"{name!r} was not recorded: the names_filter given to run_with_cache left it out"
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
        return f"ActivationCache with {len(self)} activations: {', '.join(list(self.activations)[:4])}{', ...' if len(self) > 4 else ''}"


def no_such_hook(name: str, model: nn.Module) -> str:
    """The error message for a hook name the model does not have, with the closest names it does have."""
    close = difflib.get_close_matches(name, list(model.hook_points()), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    mlp = (
        " (this model is attention-only: it has no ln2, MLP or resid_mid hook points)"
        if model.cfg.attn_only and any(part in name for part in ("mlp", "ln2", "resid_mid"))
        else ""
    )
    return f"{name!r} is not a hook point of this model{mlp}{hint} model.hook_points() lists all {len(model.hook_points())}"


# --- notebooks/05_looking_inside.ipynb, code cell 6
NamesFilter = "str | Iterable[str] | Callable[[str], bool] | None"


class HookedDemoTransformer(utils.fused.FusedTransformer):
    """Your transformer with TransformerLens's hook points: run_with_cache, run_with_hooks, hooks(). The parameters of
    DemoTransformer, so `HookedDemoTransformer.from_model(model)` or load_state_dict takes any of your models' weights."""

    def __init__(self, cfg: utils.model.Config):
        if not isinstance(cfg, utils.model.Config):
            got = (
                f"the class {cfg.__name__} (call it: Config(...))"
                if isinstance(cfg, type)
                else type(cfg).__name__
            )
            hint = (
                "; for a model you have, use HookedDemoTransformer.from_model(model)"
                if isinstance(cfg, nn.Module)
                else ""
            )
            raise TypeError(
                f"cfg must be a utils.model.Config, e.g. HookedDemoTransformer(Config(n_layers=2)), got {got}{hint}"
            )
        nn.Module.__init__(
            self
        )  # built in DemoTransformer's order: the same seed gives the same weights
        self.cfg = cfg
        self.embed, self.hook_embed = (
            utils.model.Embed(cfg),
            HookPoint(),
        )  # hook points in the order a forward pass reaches them
        self.pos_embed, self.hook_pos_embed = utils.model.PosEmbed(cfg), HookPoint()
        self.blocks = nn.ModuleList([HookedTransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = HookedLayerNorm(cfg)
        self.unembed = HookedUnembed(cfg)
        self._hook_points = {
            name: module for name, module in self.named_modules() if isinstance(module, HookPoint)
        }
        for name, hook_point in self._hook_points.items():
            hook_point.name = name

    @classmethod
    def from_model(cls, model: nn.Module) -> "HookedDemoTransformer":
        """A hooked copy of `model` (a DemoTransformer, FusedTransformer or your own class with their state dict), on its device,
        in its dtype and its train/eval mode."""
        model = getattr(model, "_orig_mod", model)  # a torch.compile'd model: the module inside it
        if not isinstance(model, nn.Module) or not isinstance(
            getattr(model, "cfg", None), utils.model.Config
        ):
            raise TypeError(
                f"model must be a DemoTransformer (or another model with a Config as .cfg), got {type(model).__name__}"
            )
        weight = next(model.parameters())
        hooked = cls(model.cfg).to(
            device=weight.device, dtype=weight.dtype
        )  # a float64 or bfloat16 model stays so
        hooked.load_state_dict(model.state_dict())
        return hooked.train(model.training)

    def hook_points(self) -> dict[str, HookPoint]:
        """Every hook point, by full name, in the order a forward pass reaches them."""
        return self._hook_points

    def forward(
        self, tokens: Int[Tensor, "batch posn"], cache=None
    ) -> Float[Tensor, "batch posn d_vocab"]:
        if cache is not None:  # notebook 04's KV cache: the fused path, without hook points
            return super().forward(tokens, cache)
        utils.model.validate_tokens(
            tokens, self.cfg, check_values=not getattr(tokens, "is_cuda", False)
        )
        embed = self.hook_embed(F.embedding(tokens, self.embed.W_E))
        pos_embed = self.pos_embed.W_pos[: tokens.shape[1]].expand_as(
            embed
        )  # a view of W_pos: no copy per batch row
        if (
            self.hook_pos_embed.active
        ):  # but a copy for hooks: one that changed the view in place would change W_pos itself
            pos_embed = self.hook_pos_embed(pos_embed.clone())
        residual = embed + pos_embed
        for block in self.blocks:
            residual = block(residual)
        return self.unembed(self.ln_final(residual))

    # ---------------------------------------------------------------- attaching hooks
    def matching_names(self, names: NamesFilter) -> list[str]:
        """The hook names a filter selects: None (all), a name, a list of names (full or short, e.g. ("pattern", 0)), or a
        function name -> bool. Unknown names are an error, so that a typo does not silently record nothing."""
        if names is None:
            return list(self._hook_points)
        if callable(names):
            return [name for name in self._hook_points if names(name)]
        if isinstance(names, (str, tuple)):
            names = [names]
        if not isinstance(names, Iterable):
            raise TypeError(
                f"names must be None, a hook name, a list of hook names or a function name -> bool, got {names!r}"
            )
        names = list(names)
        if any(isinstance(name, str) for name in names) and any(
            isinstance(name, int) for name in names
        ):  # ["pattern", 0]
            raise TypeError(
                f"names {names!r} mix names and numbers: for a short name with its layer give a tuple, e.g. "
                f"('pattern', 0) or [('pattern', 0), ('pattern', 1)]"
            )
        resolver = ActivationCache({}, self)
        full = [resolver.full_name(name) for name in names]
        for name in full:
            if name not in self._hook_points:
                raise ValueError(no_such_hook(name, self))
        return full

    @contextmanager
    def hooks(self, fwd_hooks: list[tuple[NamesFilter, HookFn]]):
        """Attach hooks for the duration of a `with` block: [(name or filter, hook_fn), ...]. They are removed when the block
        ends, also when it raises."""
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
                        f"each entry of fwd_hooks must be a (name, hook_fn) pair with hook_fn(activation, hook), got {pair!r}"
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
            for hook_point, fn in reversed(attached):
                hook_point.hooks.remove(fn)

    def run_with_hooks(
        self, tokens: Int[Tensor, "batch posn"], fwd_hooks: list[tuple[NamesFilter, HookFn]] = ()
    ) -> Tensor:
        """The logits of one forward pass with these hooks attached; they are removed afterwards, also if a hook raises."""
        with self.hooks(fwd_hooks):
            return self(tokens)

    def run_with_cache(
        self, tokens: Int[Tensor, "batch posn"], names_filter: NamesFilter = None
    ) -> tuple[Tensor, ActivationCache]:
        """The logits, and an ActivationCache of the activations at the hook points `names_filter` selects (default: all)."""
        activations: dict[str, Tensor] = {}

        def record(activation: Tensor, hook: HookPoint) -> None:
            activations[hook.name] = activation.detach()

        names = self.matching_names(names_filter)
        if not names:  # e.g. a filter function without `return`: an empty cache would only fail later, further from the cause
            raise ValueError(
                f"names_filter={names_filter!r} selects no hook point of this model, so nothing would be recorded; "
                f"model.hook_points() lists them"
            )
        logits = self.run_with_hooks(tokens, [(name, record) for name in names])
        return logits, ActivationCache(activations, self)

    def reset_hooks(self) -> None:
        """Remove every hook attached to a hook point (our hook functions; PyTorch hooks are removed with their handles)."""
        for hook_point in self._hook_points.values():
            hook_point.hooks.clear()


# --- notebooks/05_looking_inside.ipynb, code cell 32
TRANSFORMER_LENS_INSTALL = 'pip install "transformer-lens==3.9.0"'  # 3.9.0: the last release with HookedTransformer (4.x removed it)


def _transformer_lens():
    """The transformer_lens module, or an ImportError saying how to install it (it is optional, not a project dependency)."""
    try:
        import transformer_lens
    except ImportError as err:  # not installed, or a dependency of it is broken: `err` says which
        raise ImportError(
            f"TransformerLens is optional and could not be imported ({err}); install it: {TRANSFORMER_LENS_INSTALL}"
        ) from err
    if not hasattr(transformer_lens, "HookedTransformer"):
        raise ImportError(
            f"this transformer_lens ({getattr(transformer_lens, '__version__', 'unknown version')}) has no "
            f"HookedTransformer (4.x removed it): {TRANSFORMER_LENS_INSTALL}"
        )
    return transformer_lens


def _transformer_lens_buffers(keys) -> list[str]:
    """The state-dict keys that are TransformerLens's constant buffers (the causal mask and the -inf fill), not weights."""
    return [key for key in keys if key.rsplit(".", 1)[-1] in ("mask", "IGNORE")]


def to_hooked_transformer(model: nn.Module, tokenizer=None):
    """A TransformerLens HookedTransformer with `model`'s weights (the same logits), on the model's device, in eval mode.

    tokenizer: optional Hugging Face tokenizer (e.g. load_tokenizer()), for TransformerLens's text methods (to_tokens, to_str_tokens,
    generate from a string). Prompts are not given a BOS token (default_prepend_bos=False): our models were not trained with one.
    Without a tokenizer, call generate(tokens, ..., use_past_kv_cache=False): TransformerLens 3.9.0's KV cache then gives the new
    tokens the wrong positions (other tokens, or a shape error near n_ctx)."""
    inner = getattr(model, "_orig_mod", model)  # a torch.compile'd model: the module inside it
    if not isinstance(inner, nn.Module) or not isinstance(
        getattr(inner, "cfg", None), utils.model.Config
    ):
        raise TypeError(
            f"model must be a DemoTransformer (or FusedTransformer: a module whose .cfg is a utils.model.Config), "
            f"got {type(model).__name__}"
        )
    cfg, weight = inner.cfg, inner.embed.W_E
    if tokenizer is not None:
        from transformers import PreTrainedTokenizerBase

        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise TypeError(
                f"tokenizer must be None or a Hugging Face tokenizer such as load_tokenizer()'s, got {type(tokenizer).__name__}"
            )
        if len(tokenizer) > cfg.d_vocab:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens but the model only {cfg.d_vocab} (d_vocab): its ids would not fit"
            )
    tl = _transformer_lens()
    hooked_cfg = tl.HookedTransformerConfig(
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp,
        n_layers=cfg.n_layers,
        n_ctx=cfg.n_ctx,
        d_vocab=cfg.d_vocab,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        eps=cfg.layer_norm_eps,
        initializer_range=cfg.init_range,
        attn_only=cfg.attn_only,
        default_prepend_bos=False,  # our models were trained on text without a BOS token in front
        device=str(weight.device),
        dtype=weight.dtype,
        init_weights=False,
    )  # every weight is overwritten below
    with warnings.catch_warnings():  # 3.9.0 says HookedTransformer goes in 4.0: hence the pinned version, nothing a learner can act on
        warnings.filterwarnings(
            "ignore", message="HookedTransformer is deprecated", category=DeprecationWarning
        )
        hooked = tl.HookedTransformer(hooked_cfg)
    result = hooked.load_state_dict(inner.state_dict(), strict=False)
    missing = sorted(set(result.missing_keys) - set(_transformer_lens_buffers(result.missing_keys)))
    if (
        missing or result.unexpected_keys
    ):  # e.g. a class with weights of its own: they would be silently left behind
        problems = [
            f"{label} {', '.join(sorted(keys)[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("lacks", missing), ("has extra", result.unexpected_keys))
            if keys
        ]
        raise ValueError(
            f"model ({type(inner).__name__}) does not have DemoTransformer's weights, so TransformerLens cannot hold "
            f"them: it {' and '.join(problems)}"
        )
    if tokenizer is not None:
        # TransformerLens reloads the tokenizer by its name_or_path (to add a BOS option), which fails for one built in memory,
        # such as load_tokenizer()'s offline one: save it and give it a folder that exists while set_tokenizer runs
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory() as folder:
            tokenizer.save_pretrained(folder)
            hooked.set_tokenizer(AutoTokenizer.from_pretrained(folder))
    return hooked.eval()


# TransformerLens settings our architecture cannot hold: (setting, what it must be, why a different value is refused). Settings
# that only add hook points (use_attn_result, use_split_qkv_input, use_hook_mlp_in, use_attn_in, use_hook_tokens) change no weight.
_GELU_TANH = (
    "gelu_new",
    "gelu_fast",
    "gelu_pytorch_tanh",
)  # the same tanh-approximated GELU, three names
_TRANSFORMER_LENS_REQUIRED = [
    (
        "normalization_type",
        ("LN",),
        "ours is LayerNorm with weights and biases; 'LNPre' means TransformerLens folded them into the next "
        "layer (fold_ln=True, the default of HookedTransformer.from_pretrained, which also centres the weights): the same model in "
        "another parametrisation; load it with HookedTransformer.from_pretrained_no_processing(...) instead",
    ),
    (
        "positional_embedding_type",
        ("standard",),
        "ours is a learned table added to the residual stream",
    ),
    ("attention_dir", ("causal",), "ours is causal"),
    ("parallel_attn_mlp", (False,), "our blocks run the MLP after attention"),
    ("gated_mlp", (False,), "our MLP has no gate"),
    ("n_key_value_heads", (None,), "grouped-query attention: ours has one key and value per head"),
    ("num_experts", (None,), "mixture of experts"),
    ("final_rms", (False,), "our final norm is a LayerNorm"),
    ("uses_rms_norm", (False,), "our norms are LayerNorms"),
    ("post_embedding_ln", (False,), "ours has no LayerNorm after the embedding"),
    ("use_normalization_before_and_after", (False,), "ours normalises sublayer inputs only"),
    ("layer_norm_folding", (False,), "the LayerNorm weights were folded into the next layer"),
    ("use_local_attn", (False,), "ours attends to every earlier position"),
    ("use_attn_scale", (True,), "ours divides attention scores by sqrt(d_head)"),
    (
        "scale_attn_by_inverse_layer_idx",
        (False,),
        "ours divides attention scores by sqrt(d_head) alone",
    ),
    ("use_qk_norm", (False,), "ours has no query/key norm"),
    ("clip_qkv", (None,), "ours does not clip queries, keys and values"),
    ("use_logn_attn", (False,), "ours does not rescale queries by position"),
    ("use_attention_sinks", (False,), "ours has no attention sinks"),
    ("attn_scores_soft_cap", (-1.0,), "ours does not soft-cap attention scores"),
    ("output_logits_soft_cap", (-1.0,), "ours does not soft-cap logits"),
    ("load_in_4bit", (False,), "4-bit weights"),
]


def from_hooked_transformer(hooked, model_class=None) -> nn.Module:
    """Our model (model_class, default utils.model.DemoTransformer) with a TransformerLens HookedTransformer's weights.

    Only GPT-2-style TransformerLens models convert; any other setting is refused with a ValueError naming it. A model loaded with
    center_unembed=True converts but its logits differ from the original's by a constant per position (the same probabilities)."""
    tl = _transformer_lens()
    if not isinstance(hooked, tl.HookedTransformer):
        raise TypeError(
            f"hooked must be a transformer_lens.HookedTransformer, got {type(hooked).__name__}"
        )
    model_class = utils.model.DemoTransformer if model_class is None else model_class
    if not (isinstance(model_class, type) and issubclass(model_class, nn.Module)):
        raise TypeError(
            f"model_class must be a model class taking a utils.model.Config, such as utils.model.DemoTransformer or "
            f"utils.fused.FusedTransformer, got {model_class!r}"
        )
    hcfg = hooked.cfg
    if not hcfg.attn_only and hcfg.act_fn not in _GELU_TANH:
        raise ValueError(
            f"cannot convert a TransformerLens model with act_fn={hcfg.act_fn!r}; supported: {' or '.join(map(repr, _GELU_TANH))} "
            f"(one function, three names: our MLP uses GPT-2's tanh-approximated GELU)"
        )
    for name, allowed, why in _TRANSFORMER_LENS_REQUIRED:
        value = getattr(
            hcfg, name, allowed[0]
        )  # a setting this version of TransformerLens lacks cannot be in use
        if value not in allowed:
            raise ValueError(
                f"cannot convert a TransformerLens model with {name}={value!r}; supported: "
                f"{' or '.join(map(repr, allowed))} ({why})"
            )
    if hcfg.d_vocab_out != hcfg.d_vocab:
        raise ValueError(
            f"cannot convert a TransformerLens model with d_vocab_out={hcfg.d_vocab_out}; supported: d_vocab_out == d_vocab "
            f"= {hcfg.d_vocab} (our unembedding predicts the input vocabulary)"
        )
    if not math.isclose(hcfg.attn_scale, math.sqrt(hcfg.d_head), rel_tol=1e-6):
        raise ValueError(
            f"cannot convert a TransformerLens model with attn_scale={hcfg.attn_scale}; supported: sqrt(d_head) = "
            f"{math.sqrt(hcfg.d_head):g} (ours divides attention scores by it)"
        )
    cfg = utils.model.Config(
        d_model=hcfg.d_model,
        layer_norm_eps=hcfg.eps,
        d_vocab=hcfg.d_vocab,
        init_range=hcfg.initializer_range,
        n_ctx=hcfg.n_ctx,
        d_head=hcfg.d_head,
        d_mlp=hcfg.d_mlp,
        n_heads=hcfg.n_heads,
        n_layers=hcfg.n_layers,
        attn_only=hcfg.attn_only,
    )
    weight = hooked.embed.W_E
    model = model_class(cfg).to(device=weight.device, dtype=weight.dtype)
    state = hooked.state_dict()
    for key in _transformer_lens_buffers(state):
        del state[key]
    model.load_state_dict(state, strict=True)
    return model.eval()
