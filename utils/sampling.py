"""GENERATED from notebooks/04_sampling.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/04_sampling.ipynb, code cell 2

import math

import einops
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

import utils.fused  # notebook 03's twin has a faster cached attention (below)
import utils.model  # as a module: running this cell never replaces a DemoTransformer you pasted
from utils.model import Float, Int
from utils.validation import (
    check_beam_search_args,
    check_cache_holds,
    check_cache_use,
    check_cache_update,
    check_generate_args,
    check_sampler,
    require_cache_layer,
    require_config,
    require_int,
    require_ngram_args,
    require_prompt,
    require_rows,
)


# --- notebooks/04_sampling.ipynb, code cell 7
def apply_temperature(
    logits: Float[Tensor, "batch d_vocab"], temperature: float
) -> Float[Tensor, "batch d_vocab"]:
    """Logits for sampling at `temperature` > 0: the distribution to sample from is
    softmax(logits / temperature)."""
    check_sampler("apply_temperature", logits, temperature=temperature)  # bad input: one line
    return logits / temperature


# --- notebooks/04_sampling.ipynb, code cell 10
def apply_frequency_penalty(
    logits: Float[Tensor, "batch d_vocab"], tokens: Int[Tensor, "batch posn"], penalty: float
) -> Float[Tensor, "batch d_vocab"]:
    """Lower each token's logit by `penalty` times the number of times it occurs in its row of
    `tokens` (prompt and generated)."""
    check_sampler("apply_frequency_penalty", logits, tokens=tokens, penalty=penalty)  # one line
    counts = torch.zeros_like(logits).scatter_add_(
        -1, tokens.long(), torch.ones_like(tokens, dtype=logits.dtype)
    )
    return logits - penalty * counts


# --- notebooks/04_sampling.ipynb, code cell 13
def apply_top_k(logits: Float[Tensor, "batch d_vocab"], k: int) -> Float[Tensor, "batch d_vocab"]:
    """The k largest logits of each row (and any tied with the k-th), unchanged; every other logit
    -inf. k >= 1; k >= d_vocab keeps them all."""
    check_sampler("apply_top_k", logits, k=k)  # bad input (k = 0, 1.5): one clear line
    if k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[:, -1:]  # [batch, 1]: each row's k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


# --- notebooks/04_sampling.ipynb, code cell 15
def apply_top_p(logits: Float[Tensor, "batch d_vocab"], p: float) -> Float[Tensor, "batch d_vocab"]:
    """The nucleus of each row: its most probable tokens, until their total probability reaches p
    (0 < p <= 1); the rest -inf."""
    check_sampler("apply_top_p", logits, p=p)  # bad input (p = 0, NaN): one clear line
    if p >= 1:  # every token (float32's running total can reach 1.0 before a long row ends)
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(dim=-1)
    mass_before = (
        sorted_probs.cumsum(dim=-1) - sorted_probs
    )  # probability of the tokens more probable than each one
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


# --- notebooks/04_sampling.ipynb, code cell 18
def next_logits(
    model: nn.Module, tokens: Int[Tensor, "batch posn"], cache: KVCache | None = None
) -> Float[Tensor, "batch d_vocab"]:
    """The logits for the token after `tokens` (all the tokens so far), from the last n_ctx of
    them: the model has no position beyond. With a cache, only the positions it does not hold yet
    run through the model (next section)."""
    require_prompt(model, tokens)  # None, or one sequence without its batch dimension: a clear line
    start = max(0, tokens.shape[1] - model.cfg.n_ctx)  # where the window of the last n_ctx begins
    if cache is None:
        return model(tokens[:, start:])[:, -1]
    if start != cache.start:  # the window moved: every position changed, every cached key is stale
        cache.reset(start)
    held = cache.start + cache.length
    check_cache_holds(cache, tokens)  # it holds these tokens' first ones, not another prompt's
    return cached_forward(model, tokens[:, held:], cache)[:, -1]


def sample_next_token(
    logits: Float[Tensor, "batch d_vocab"],
    tokens: Int[Tensor, "batch posn"],
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    frequency_penalty: float,
    generator: torch.Generator | None,
) -> Int[Tensor, "batch"]:
    """One token per row: the frequency penalty, then greedy (temperature 0), or temperature,
    top-k, top-p and a draw."""
    if frequency_penalty:
        logits = apply_frequency_penalty(logits, tokens, frequency_penalty)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = apply_top_k(logits, top_k)
    if top_p is not None and top_p < 1:
        logits = apply_top_p(logits, top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]


# --- notebooks/04_sampling.ipynb, code cell 19
@torch.no_grad()
def generate(
    model: nn.Module,
    tokens: Int[Tensor, "batch posn"],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    frequency_penalty: float = 0.0,
    stop_token: int | None = None,
    use_cache: bool = True,
    seed: int | None = None,
) -> Int[Tensor, "batch new_posn"]:
    """`tokens` [batch, posn] followed by up to `max_new_tokens` tokens per row: greedy when
    temperature == 0, else sampled. Rows that produce `stop_token` are padded with it; generation
    stops when every row has. `seed`: the same seed, the same tokens."""
    check_generate_args(
        model,
        tokens,
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        frequency_penalty,
        stop_token,
        use_cache,
        seed,
    )
    generator = None if seed is None else torch.Generator(tokens.device).manual_seed(int(seed))
    cache = KVCache(model.cfg, tokens.shape[0]) if use_cache else None
    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    tokens = tokens.clone()  # a new tensor, even for max_new_tokens=0: the prompt stays yours
    for _ in range(max_new_tokens):
        logits = next_logits(model, tokens, cache).float()
        next_token = sample_next_token(
            logits, tokens, temperature, top_k, top_p, frequency_penalty, generator
        )
        if stop_token is not None:
            next_token = torch.where(finished, stop_token, next_token)  # finished rows: padding
            finished |= next_token == stop_token
        tokens = torch.cat([tokens, next_token[:, None].to(tokens.dtype)], dim=1)
        if stop_token is not None and finished.all():
            break
    return tokens


# --- notebooks/04_sampling.ipynb, code cell 22
class KVCache:
    """Every layer's keys and values for the positions the model has already run, each
    [batch, posn, n_heads, d_head]. `start`: where those positions begin in the whole token
    sequence (0 until generation runs past n_ctx, when the window of positions slides)."""

    def __init__(self, cfg: utils.model.Config, batch: int):
        require_config("KVCache(cfg, batch): cfg", cfg, utils.model.Config)  # not a model: one line
        self.cfg, self.batch, self.start = cfg, require_int("batch", batch), 0
        self._keys: list[Tensor | None] = [
            None
        ] * cfg.n_layers  # stored [batch, n_heads, n_ctx, d_head], as SDPA takes them
        self._values: list[Tensor | None] = [None] * cfg.n_layers
        self._lengths = [0] * cfg.n_layers
        self._model = None  # the model whose keys and values it holds (see check)
        self._tokens: Tensor | None = None  # and the token ids they came from (see check)
        self.derived: dict[int, object] = {}  # per layer, what a model derives from its weights

    @property
    def length(self) -> int:
        """Positions held, counted by the last layer: read it before the first layer runs (during
        a forward, the layers already run hold the new positions too)."""
        return self._lengths[-1]

    def update(
        self, layer: int, k: Float[Tensor, "batch new_posn n_heads d_head"], v: Tensor
    ) -> tuple[
        Float[Tensor, "batch posn n_heads d_head"], Float[Tensor, "batch posn n_heads d_head"]
    ]:
        """Store `layer`'s keys and values for the new positions; return its keys and values for
        every position so far."""
        check_cache_update(self, layer, k, v)  # a layer it has, keys of the dtype it holds
        expected = (self.batch, k.shape[1], self.cfg.n_heads, self.cfg.d_head)
        if tuple(k.shape) != expected or tuple(v.shape) != expected:
            raise ValueError(
                f"cache.update(layer, k, v): k and v must be [batch, new_posn, n_heads, d_head] = "
                f"[{self.batch}, new_posn, {self.cfg.n_heads}, {self.cfg.d_head}], got k "
                f"{list(k.shape)} and v {list(v.shape)}"
            )
        start, end = self._lengths[layer], self._lengths[layer] + k.shape[1]
        if end > self.cfg.n_ctx:
            raise ValueError(f"the cache holds {start} positions: {k.shape[1]} more pass n_ctx")
        held = self._keys[layer]
        if held is None or (start == 0 and (held.dtype, held.device) != (k.dtype, k.device)):
            # room for n_ctx positions, in k's dtype and device (anew, if they changed by a reset)
            shape = (self.batch, self.cfg.n_heads, self.cfg.n_ctx, self.cfg.d_head)
            self._keys[layer], self._values[layer] = k.new_empty(shape), v.new_empty(shape)
        elif k.requires_grad or v.requires_grad:  # write into copies: backward needs the old ones
            self._keys[layer], self._values[layer] = held.clone(), self._values[layer].clone()
        self._keys[layer][:, :, start:end] = k.transpose(1, 2)
        self._values[layer][:, :, start:end] = v.transpose(1, 2)
        self._lengths[layer] = end
        return self.keys(layer), self.values(layer)

    def keys(self, layer: int) -> Float[Tensor, "batch posn n_heads d_head"]:
        require_cache_layer(self, layer, "cache.keys")  # not 7 of 2 layers, nor -1: one clear line
        if self._keys[layer] is None:
            return torch.empty(self.batch, 0, self.cfg.n_heads, self.cfg.d_head)
        return self._keys[layer][:, :, : self._lengths[layer]].transpose(1, 2)

    def values(self, layer: int) -> Float[Tensor, "batch posn n_heads d_head"]:
        require_cache_layer(self, layer, "cache.values")
        if self._values[layer] is None:
            return torch.empty(self.batch, 0, self.cfg.n_heads, self.cfg.d_head)
        return self._values[layer][:, :, : self._lengths[layer]].transpose(1, 2)

    def reset(self, start: int = 0) -> None:
        """Forget every position (the room stays); start again at position `start` of the text."""
        self._lengths = [0] * self.cfg.n_layers
        self.start, self._model, self.derived = require_int("start", start, minimum=0), None, {}

    def reorder(self, rows: Int[Tensor, "batch"]) -> None:
        """Row i becomes a copy of row rows[i] (beam search: each beam continues an earlier one)."""
        require_rows(rows, self.batch)  # ids of rows in [0, batch): one clear error
        for layer, (keys, values) in enumerate(zip(self._keys, self._values)):
            if keys is not None:
                n = self._lengths[layer]
                keys[:, :, :n] = keys[:, :, :n].index_select(0, rows)
                values[:, :, :n] = values[:, :, :n].index_select(0, rows)
        if self._tokens is not None:
            self._tokens = self._tokens.index_select(0, rows)

    def check(self, tokens: Tensor, model: nn.Module) -> None:
        """A clear error unless `tokens` [batch, new_posn] fit this cache: the model that filled it
        (keys of another model, even of the same config, would not fit), its config, the batch
        size, room within n_ctx."""
        check_cache_use(self, tokens, model)

    def __repr__(self) -> str:
        return (
            f"KVCache({self.cfg.n_layers} layers, batch {self.batch}, {self.length} of "
            f"{self.cfg.n_ctx} positions held, starting at token {self.start})"
        )


# --- notebooks/04_sampling.ipynb, code cell 23
def attention_with_cache(
    attn: utils.model.Attention,
    x: Float[Tensor, "batch new_posn d_model"],
    cache: KVCache,
    layer: int,
) -> Float[Tensor, "batch new_posn d_model"]:
    """Attention for the new positions only: their queries attend to every key so far, the cached
    ones and their own."""
    project = "batch posn d_model, n_heads d_model d_head -> batch posn n_heads d_head"
    q = einops.einsum(x, attn.W_Q, project) + attn.b_Q
    k = einops.einsum(x, attn.W_K, project) + attn.b_K
    v = einops.einsum(x, attn.W_V, project) + attn.b_V
    k, v = cache.update(layer, k, v)  # [batch, past + new_posn, n_heads, d_head]
    new_posn, all_posn = x.shape[1], k.shape[1]
    past = all_posn - new_posn
    scores = einops.einsum(
        q, k, "batch query n_heads d_head, batch key n_heads d_head -> batch n_heads query key"
    )
    future = torch.ones(new_posn, all_posn, dtype=torch.bool, device=x.device).triu(past + 1)
    pattern = (scores / math.sqrt(attn.cfg.d_head)).masked_fill(future, attn.IGNORE).softmax(-1)
    z = einops.einsum(
        pattern,
        v,
        "batch n_heads query key, batch key n_heads d_head -> batch query n_heads d_head",
    )
    out = "batch posn n_heads d_head, n_heads d_head d_model -> batch posn d_model"
    return einops.einsum(z, attn.W_O, out) + attn.b_O


def forward_with_cache(
    model: utils.model.DemoTransformer,
    tokens: Int[Tensor, "batch new_posn"],
    cache: KVCache,
    attention=attention_with_cache,
) -> Float[Tensor, "batch new_posn d_vocab"]:
    """The logits of the new positions `tokens`, which follow the cache's positions; the cache then
    holds them too. `attention(attn, x, cache, layer)` runs each layer's attention."""
    # cache must be a KVCache (not None) filled by this model, of this batch size, with room
    # within n_ctx: one clear line if not (cache.check would fail on None itself)
    check_cache_use(cache, tokens, model)
    past = cache.length
    positions = model.pos_embed.W_pos[past : past + tokens.shape[1]]  # broadcast over the batch
    residual = model.embed(tokens) + positions
    for layer, block in enumerate(model.blocks):
        residual = residual + attention(block.attn, block.ln1(residual), cache, layer)
        if not model.cfg.attn_only:  # notebook 05's attention-only models have no MLP
            residual = residual + block.mlp(block.ln2(residual))
    return model.unembed(model.ln_final(residual))


# --- notebooks/04_sampling.ipynb, code cell 25
def fused_attention_with_cache(
    attn: utils.fused.FusedAttention,
    x: Float[Tensor, "batch new_posn d_model"],
    cache: KVCache,
    layer: int,
) -> Float[Tensor, "batch new_posn d_model"]:
    """attention_with_cache for notebook 03's fused twin: its one matmul for q, k and v, and
    PyTorch's fused attention with the shifted mask (a single new position sees every key)."""
    # W_Q, W_K and W_V side by side, made once per cache: like the keys and values it holds, valid
    # for the weights it was filled with (with gradients on, made afresh for them to flow)
    if torch.is_grad_enabled() or layer not in cache.derived:
        cache.derived[layer] = attn.qkv_weights()
    q, k, v = attn.project_qkv(x, cache.derived[layer])
    k, v = cache.update(layer, k, v)
    new_posn, past = x.shape[1], k.shape[1] - x.shape[1]
    visible = torch.ones(new_posn, past + new_posn, dtype=torch.bool, device=x.device).tril(past)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [batch, n_heads, posn, d_head]
    z = F.scaled_dot_product_attention(q, k, v, attn_mask=None if new_posn == 1 else visible)
    return attn.project_out(z.transpose(1, 2))


def cached_forward(
    model: nn.Module, tokens: Int[Tensor, "batch new_posn"], cache: KVCache
) -> Float[Tensor, "batch new_posn d_vocab"]:
    """The logits of the new positions through the cache: forward_with_cache, with the fused
    attention for notebook 03's fused twin (and notebook 05's hooked model, built on it)."""
    check_cache_use(cache, tokens, model)  # a model, a cache and tokens that fit: a clear error
    fused = isinstance(model.blocks[0].attn, utils.fused.FusedAttention)
    return forward_with_cache(
        model, tokens, cache, fused_attention_with_cache if fused else attention_with_cache
    )


# --- notebooks/04_sampling.ipynb, code cell 29
def ban_repeated_ngrams(
    tokens: Int[Tensor, "batch posn"], log_probs: Float[Tensor, "batch d_vocab"], n: int
) -> Float[Tensor, "batch d_vocab"]:
    """log_probs with -inf for each token that would complete an n-gram already in its row of
    tokens (Hugging Face's no_repeat_ngram_size=n)."""
    n = require_ngram_args(tokens, log_probs, n)  # n = 0: nothing banned
    posn = tokens.shape[1]
    if n == 0 or posn < n:
        return log_probs
    windows = tokens.unfold(1, n, 1)  # [batch, posn - n + 1, n]: every n-gram of each row
    prefix = tokens[:, posn - n + 1 :]  # [batch, n - 1]: what the next token would extend
    repeats = (windows[..., :-1] == prefix[:, None]).all(dim=-1)  # n-grams that start like that
    rows, starts = repeats.nonzero(as_tuple=True)
    banned = torch.zeros_like(log_probs, dtype=torch.bool)
    banned[rows, windows[rows, starts, -1]] = True  # each such n-gram bans its own last token
    return log_probs.masked_fill(banned, float("-inf"))


# --- notebooks/04_sampling.ipynb, code cell 30
@torch.no_grad()
def beam_search(
    model: nn.Module,
    tokens: Int[Tensor, "1 posn"],
    num_beams: int,
    max_new_tokens: int,
    *,
    length_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    stop_token: int | None = None,
) -> list[tuple[Int[Tensor, "posn"], float]]:
    """The finished beams, best first: (prompt and new tokens, the sum of the new tokens'
    log-probabilities / their number ** length_penalty). Hugging Face's beam search with
    early_stopping=True."""
    check_beam_search_args(
        model, tokens, num_beams, max_new_tokens, length_penalty, no_repeat_ngram_size, stop_token
    )
    cache = KVCache(model.cfg, num_beams)
    beams = tokens.repeat(num_beams, 1)  # [num_beams, posn]: copies of the prompt
    scores = torch.full((num_beams,), -1e9, device=tokens.device)
    scores[0] = 0.0  # only the first copy is live at first
    finished: list[tuple[Tensor, float]] = []
    for step in range(max_new_tokens):
        log_probs = next_logits(model, beams, cache).float().log_softmax(dim=-1)  # [beam, d_vocab]
        if no_repeat_ngram_size:
            log_probs = ban_repeated_ngrams(beams, log_probs, no_repeat_ngram_size)
        candidates = (scores[:, None] + log_probs).flatten()  # beam b's token t: b * d_vocab + t
        top_scores, top = candidates.topk(2 * num_beams)
        beam, token = top // log_probs.shape[-1], top % log_probs.shape[-1]
        sequences = torch.cat([beams[beam], token[:, None]], dim=1)  # [2 * num_beams, posn + 1]
        ends = token == stop_token if stop_token is not None else torch.zeros_like(token).bool()
        if step == max_new_tokens - 1:
            ends = torch.ones_like(ends)
        for i in range(num_beams):  # only the best num_beams candidates may finish
            if ends[i]:
                score = (top_scores[i] / (step + 1) ** length_penalty).item()
                finished.append((sequences[i], score))
        finished = sorted(finished, key=lambda beam_and_score: beam_and_score[1], reverse=True)
        finished = finished[:num_beams]
        if len(finished) == num_beams or ends.all():
            break
        running = top_scores - 1e9 * ends  # a candidate that ended is out of the running
        keep = running.topk(num_beams).indices
        beams, scores = sequences[keep], running[keep]
        cache.reorder(beam[keep])
    return finished


# written by `make export`; sha256 of the text above: ef3d0ef1a723fe79
