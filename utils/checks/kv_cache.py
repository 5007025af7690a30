"""Notebook 04's KV-cache check: check_kv_cache(forward_with_cache), against the uncached model of
utils/model.py.

The learner's forward_with_cache runs a sequence through the model in chunks (the prompt, single
tokens, a chunk of several tokens after earlier ones), with one KVCache; each chunk's logits must
equal the uncached model's logits at those positions. A small reference below can make each known
mistake (the `mistake=` argument); a failing check names the first one that gives what the learner's
code gave.
"""

from __future__ import annotations

import math
from dataclasses import replace

import einops
import torch

from utils.printing import print_wrapped
from utils.checks.core import (
    call_learner,
    fail,
    known_mistake,
    learner_facing,
    mistakes_in,
    recognise,
)
from utils.checks.model import CHECK_CFG

# --------------------------------------------------------------------------- known mistakes

KV_CACHE_NOT_UPDATED = known_mistake(
    "kv_cache_not_updated",
    "forward_with_cache",
    "the new keys and values never reach the cache, so the next step cannot see these positions: "
    "in attention_with_cache, k, v = cache.update(layer, k, v), and attend over the k and v it "
    "returns (every position so far).",
)
KV_POSITIONS_NOT_OFFSET = known_mistake(
    "kv_positions_not_offset",
    "forward_with_cache",
    "the new tokens get the position embeddings of positions 0, 1, ... again; "
    "after `past = cache.length` cached positions they are at positions past, past + 1, ...: "
    "model.pos_embed.W_pos[past:past + new_posn] (read cache.length before any layer runs).",
)
KV_MASK_NOT_SHIFTED = known_mistake(
    "kv_mask_not_shifted",
    "forward_with_cache",
    "the causal mask is not shifted: the scores are [new_posn, past + new_posn], "
    "and new query i sits at position past + i, so it may see keys 0..past + i. "
    "torch.triu(ones(new_posn, past + new_posn), diagonal=past + 1) hides the rest; "
    "diagonal=1 (notebook 02's apply_causal_mask, or the first rows of the full-length mask) "
    "treats the new queries as positions 0, 1, ...",
)
KV_NO_MASK = known_mistake(
    "kv_no_mask",
    "forward_with_cache",
    "there is no causal mask in the cached path: a single new token may see every key, "
    "but when several new tokens run at once (the prompt, say) each must not see the ones after "
    "it: mask with torch.triu(ones(new_posn, past + new_posn), diagonal=past + 1).",
)
KV_MASK_OFF_BY_ONE = known_mistake(
    "kv_mask_off_by_one",
    "forward_with_cache",
    "the shifted mask is off by one: new query i may see keys 0..past + i, its own key included: "
    "diagonal=past + 1 (diagonal=past hides the query's own key, diagonal=past + 2 shows the next "
    "one).",
)
KV_LENGTH_READ_MID_FORWARD = known_mistake(
    "kv_length_read_mid_forward",
    "forward_with_cache",
    "cache.length is read after cache.update, in the middle of the forward. cache.length counts "
    "the positions held by the last layer: once an earlier layer has stored the new positions it "
    "still gives the old count, and once the last layer has, the new one, so every layer but one "
    "gets the wrong position offset. Read past = cache.length once, in forward_with_cache before "
    "the first layer runs, or in the attention use the keys' length: past = k.shape[1] - "
    "new_posn after k, v = cache.update(layer, k, v).",
)
KV_UPDATE_TWICE = known_mistake(
    "kv_update_twice",
    "forward_with_cache",
    "the cache stores the new positions more than once per layer (cache.update called twice, or "
    "in forward_with_cache as well as in the attention), so it fills up twice as fast and its keys "
    "repeat: call k, v = cache.update(layer, k, v) once per layer, in attention_with_cache.",
    raises=ValueError,
    says="more pass n_ctx",
)

CHUNKS = (
    4,
    1,
    1,
    3,
    2,
)  # the prompt, single tokens (as generation runs), then several new tokens after cached ones
LOGITS_TOLERANCE = dict(atol=1e-4, rtol=1e-3)
WINDOW_START = 2  # a cache.start as once generation has run past n_ctx (the window slid)


def _model(seed: int = 0, attn_only: bool = False):
    """A tiny DemoTransformer with every weight random, biases and LayerNorms included, so that
    every mistake shows; attention-only (no MLPs, as notebook 05's) when asked."""
    from utils.model import DemoTransformer

    torch.manual_seed(seed)
    cfg = replace(CHECK_CFG, n_layers=2, d_vocab=40, n_ctx=16, attn_only=attn_only)
    model = DemoTransformer(cfg).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.endswith(
                ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_E", "W_pos", "W_U")
            ):
                parameter.normal_(mean=1.0 if name.endswith(".w") else 0.0, std=0.3)
        for name in (
            "W_Q",
            "W_K",
        ):  # sharper attention patterns than the initial ones: a mask or a key out of place shows
            for block in model.blocks:
                getattr(block.attn, name).mul_(8)
    return model


def _reference(model, tokens, cache, mistake=None):
    """forward_with_cache, as the solution writes it, or with a known mistake."""
    past = cache.length
    offset = 0 if mistake is KV_POSITIONS_NOT_OFFSET else past
    residual = model.embed(tokens) + model.pos_embed.W_pos[offset : offset + tokens.shape[1]]
    for layer, block in enumerate(model.blocks):
        attn, x = block.attn, block.ln1(residual)
        q, k, v = (
            einops.einsum(
                x, W, "batch posn d_model, n_heads d_model d_head -> batch posn n_heads d_head"
            )
            + b
            for W, b in ((attn.W_Q, attn.b_Q), (attn.W_K, attn.b_K), (attn.W_V, attn.b_V))
        )
        if mistake is not KV_CACHE_NOT_UPDATED:
            k, v = cache.update(layer, k, v)
        new, total = x.shape[1], k.shape[1]
        scores = einops.einsum(
            q, k, "batch q n_heads d_head, batch k n_heads d_head -> batch n_heads q k"
        ) / math.sqrt(attn.cfg.d_head)
        diagonal = {KV_MASK_NOT_SHIFTED: 1, KV_MASK_OFF_BY_ONE: total - new}.get(
            mistake, total - new + 1
        )
        if mistake is not KV_NO_MASK:
            future = torch.triu(torch.ones(new, total, dtype=torch.bool), diagonal=diagonal)
            scores = scores.masked_fill(future, float("-inf"))
        z = einops.einsum(
            scores.softmax(-1),
            v,
            "batch n_heads q k, batch k n_heads d_head -> batch q n_heads d_head",
        )
        residual = (
            residual
            + einops.einsum(
                z,
                attn.W_O,
                "batch posn n_heads d_head, n_heads d_head d_model -> batch posn d_model",
            )
            + attn.b_O
        )
        residual = residual + block.mlp(block.ln2(residual))
    return model.unembed(model.ln_final(residual))


def _tokens(model, seed: int):
    """Random tokens for the chunks: a batch of 2, sum(CHUNKS) positions."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.cfg.d_vocab, (2, sum(CHUNKS)), generator=generator)


def _watched_cache(cfg, batch, mode=None):
    """A KVCache that notes whether cache.length is read after a cache.update within one forward
    (`read_mid_forward`): the count it gives then depends on which layers have run. With `mode`,
    such a read gives what its reader may have meant instead, the same for every layer: "before",
    the positions held before this forward; "after", those held once it is done."""
    from utils.sampling import KVCache

    class WatchedCache(KVCache):
        updated = read_mid_forward = False
        before = new = 0  # set by _run for each forward

        @property
        def length(self) -> int:
            if self.updated:
                self.read_mid_forward = True
                if mode is not None:
                    return self.before + (self.new if mode == "after" else 0)
            return super().length

        def update(self, layer, k, v):
            self.updated = True
            return super().update(layer, k, v)

    return WatchedCache(cfg, batch)


def _run(
    forward, model, tokens, upto=None, what=None, mode=None, things_to_check=None, window_start=0
):
    """The outputs of `forward` for each chunk of `tokens`, with one cache, the cache's length
    after each, and whether cache.length was read after a cache.update within a forward (with
    `mode`, such reads give the same count for every layer: see _watched_cache). `window_start`:
    the cache's start, as once generation has run past n_ctx (tokens then are the window)."""
    cache, outputs, lengths, start = _watched_cache(model.cfg, tokens.shape[0], mode), [], [], 0
    cache.reset(window_start)
    read_mid_forward = False
    for size in CHUNKS[:upto]:
        chunk = tokens[:, start : start + size]
        cache.updated, cache.before, cache.new = False, cache.length, size
        if what is None:
            outputs.append(forward(model, chunk, cache))
        else:
            outputs.append(
                call_learner(
                    forward,
                    model,
                    chunk,
                    cache,
                    what=what,
                    known=[KV_UPDATE_TWICE],
                    things_to_check=things_to_check,
                )
            )
        cache.updated = False
        read_mid_forward |= cache.read_mid_forward
        lengths.append(cache.length)
        start += size
    return outputs, lengths, read_mid_forward


def _reads_length_mid_forward(fn, model, tokens, expected) -> bool:
    """KV_LENGTH_READ_MID_FORWARD, recognised by its effect: the learner's forward reads
    cache.length after a cache.update, and gives the right logits for every chunk once every such
    read gives the same count (before or after this forward's positions)."""
    for mode in ("before", "after"):
        try:
            with torch.no_grad():
                outputs = _run(fn, model, tokens, mode=mode)[0]
        except Exception:
            continue
        start = 0
        right = True
        for size, out in zip(CHUNKS, outputs):
            want = expected[:, start : start + size]
            right &= (
                isinstance(out, torch.Tensor)
                and out.shape == want.shape
                and torch.allclose(out, want, **LOGITS_TOLERANCE)
            )
            start += size
        if right:
            return True
    return False


def _nan_with_keys_to_see(fn, model, tokens) -> bool:
    """Whether fn gives NaN for one new token after the first chunk's positions, cached by the
    reference: its query sees keys, so a mask that hides them all (a softmax of 0 / 0) is not
    the cause."""
    cache = _watched_cache(model.cfg, tokens.shape[0])
    first = CHUNKS[0]
    try:
        with torch.no_grad():
            _reference(model, tokens[:, :first], cache)
            out = fn(model, tokens[:, first : first + 1], cache)
    except Exception:
        return False
    return isinstance(out, torch.Tensor) and bool(out.isnan().any())


@learner_facing
def check_kv_cache(fn) -> None:
    """`fn(model, tokens, cache)` (forward_with_cache) must give the logits of the new positions
    `tokens` [batch, new_posn], the same as the model without a cache gives at those positions, and
    leave them in the cache."""
    from utils.sampling import KVCache  # noqa: F401 (the check needs the module that the notebook generates)

    call = "forward_with_cache(model, tokens, cache)"
    things_to_check = (
        "past = cache.length before the layers run; W_pos rows past:past + new_posn; "
        "in attention, k, v = cache.update(layer, k, v), then the new queries against all those "
        "keys, scaled by 1 / sqrt(attn.cfg.d_head) and masked with torch.triu(ones(new_posn, past "
        "+ new_posn), diagonal=past + 1), a softmax over the keys (dim=-1); the MLP (none when "
        "cfg.attn_only) and the final LayerNorm as usual. Every size "
        f"from cfg: these models have d_model {CHECK_CFG.d_model} and {CHECK_CFG.n_heads} heads of "
        f"{CHECK_CFG.d_head}, which no run config has."
    )
    for seed, attn_only in ((0, False), (1, False), (2, True)):
        model = _model(seed, attn_only)
        what = call + " on a model of attention alone (cfg.attn_only: no MLPs)" * attn_only
        tokens = _tokens(model, seed)
        with torch.no_grad():
            expected = model(tokens)
            got, lengths, read_mid_forward = _run(
                fn, model, tokens, what=what, things_to_check=things_to_check
            )
        start = 0
        for index, (size, out, length) in enumerate(zip(CHUNKS, got, lengths)):
            end = start + size
            where = (
                f"chunk {index + 1} of {len(CHUNKS)} (positions {start} to {end - 1}, "
                f"after {start} cached positions; chunks of {', '.join(map(str, CHUNKS))})"
            )
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (
                2,
                size,
                model.cfg.d_vocab,
            ):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                fail(
                    f"{what} for {where} returned {shape}; "
                    f"expected logits of shape {(2, size, model.cfg.d_vocab)} [batch, new_posn, "
                    "d_vocab]: one row of logits per new position only."
                )
            if length != end:
                fail(
                    f"{what}: after {where}, cache.length is {length}, expected {end}.",
                    KV_CACHE_NOT_UPDATED if length == 0 else None,
                    "each layer's attention must store the new positions with cache.update(layer, "
                    "k, v), once per forward.",
                )
            want = expected[:, start:end]
            if out.dtype != want.dtype:
                fail(
                    f"{what} for {where} returned {str(out.dtype).removeprefix('torch.')} logits, "
                    f"expected {str(want.dtype).removeprefix('torch.')}, the model's dtype: no "
                    ".double() or .float() on the way"
                )
            if not torch.allclose(out, want, **LOGITS_TOLERANCE):
                error = (out - want).abs().nan_to_num(nan=float("inf"))
                same = lambda a, b: (
                    a is not None
                    and a.shape == b.shape
                    and torch.allclose(a, b, equal_nan=True, **LOGITS_TOLERANCE)
                )  # noqa: E731
                nan_anyway = bool(out.isnan().any()) and _nan_with_keys_to_see(fn, model, tokens)
                nan = (
                    " Your logits hold NaN, even for one new token after positions cached right "
                    "(its query has keys to see, so not from a softmax of 0 / 0): 0 * -inf is NaN, "
                    "as in a mask multiplied by -inf. Set the masked scores with masked_fill(mask, "
                    "value) or torch.where instead."
                    if nan_anyway
                    else " Your logits hold NaN: a query whose every key is masked gets a softmax "
                    "of 0 / 0."
                    if out.isnan().any()
                    else ""
                )

                def reproduce(mistake):
                    with torch.no_grad():
                        return _run(
                            lambda m, t, c: _reference(m, t, c, mistake),
                            model,
                            tokens,
                            upto=index + 1,
                        )[0][-1]

                fail(
                    f"{what}: the logits for {where} differ from the model's without a cache "
                    f"(largest difference {error.max().item():.3g}, "
                    f"at new position {int(error.amax(dim=(0, 2)).argmax())} of the chunk).{nan}",
                    # recognised by its effect (its reproductions, NaN once a query sees no key,
                    # would match other mistakes')
                    None
                    if nan_anyway
                    else KV_LENGTH_READ_MID_FORWARD
                    if read_mid_forward and _reads_length_mid_forward(fn, model, tokens, expected)
                    else recognise(
                        out.detach(), mistakes_in("forward_with_cache"), reproduce, same
                    ),
                    things_to_check,
                )
            start = end
    _check_a_slid_window(fn, call, things_to_check)
    print_wrapped(
        f"forward_with_cache passed: {sum(CHUNKS)} positions fed in chunks "
        f"of {', '.join(map(str, CHUNKS))} give the uncached logits (3 models, one of attention "
        "alone; batch 2), also once the window has slid past n_ctx, and the cache holds every "
        "position"
    )


def _check_a_slid_window(fn, call, things_to_check, window_start=WINDOW_START) -> None:
    """Past n_ctx, next_logits resets the cache to the window's first token (cache.start > 0) and
    runs the window through the model: its positions, and so its W_pos rows, count from 0 again.
    The same chunks as before (which gave the right logits with cache.start = 0) must give the
    uncached model's logits of the window."""
    model = _model(0)
    tokens = _tokens(model, seed=0)
    what = (
        f"{call} once generation has run past n_ctx (the window of the last n_ctx tokens slid: "
        f"cache.start = {window_start}, the tokens fed are the window's)"
    )
    with torch.no_grad():
        expected = model(tokens)
        got, _, _ = _run(
            fn, model, tokens, what=what, things_to_check=things_to_check, window_start=window_start
        )
    start = 0
    for index, (size, out) in enumerate(zip(CHUNKS, got)):
        want = expected[:, start : start + size]
        right = isinstance(out, torch.Tensor) and out.shape == want.shape
        if not (right and torch.allclose(out, want, **LOGITS_TOLERANCE)):
            fail(
                [
                    f"{what}: the logits for chunk {index + 1} of {len(CHUNKS)} differ from the "
                    "model's on the window without a cache; with cache.start = 0 they were right.",
                    "  Likely cause: the positions are counted from the start of the whole text "
                    "(cache.start + cache.length). The model sees only the window, whose first "
                    "token is at position 0: its W_pos rows are cache.length:cache.length + "
                    "new_posn.",
                ]
            )
        start += size
