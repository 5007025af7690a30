"""GENERATED from notebooks/04_sampling.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/04_sampling.ipynb, code cell 2

import inspect
import math
import numbers

import einops
import torch
import torch.nn as nn
from torch import Tensor

import utils.model  # as a module: running this cell never replaces a DemoTransformer you pasted into this notebook
from utils.model import Float, Int


# --- notebooks/04_sampling.ipynb, code cell 7
def apply_temperature(
    logits: Float[Tensor, "batch d_vocab"], temperature: float
) -> Float[Tensor, "batch d_vocab"]:
    """Logits for sampling at `temperature` > 0: the distribution to sample from is softmax(logits / temperature)."""
    return logits / temperature


# --- notebooks/04_sampling.ipynb, code cell 10
def apply_frequency_penalty(
    logits: Float[Tensor, "batch d_vocab"], tokens: Int[Tensor, "batch posn"], penalty: float
) -> Float[Tensor, "batch d_vocab"]:
    """Lower each token's logit by `penalty` times the number of times it occurs in its row of `tokens` (prompt and generated)."""
    counts = torch.zeros_like(logits).scatter_add_(
        -1, tokens.long(), torch.ones_like(tokens, dtype=logits.dtype)
    )
    return logits - penalty * counts


# --- notebooks/04_sampling.ipynb, code cell 13
def apply_top_k(logits: Float[Tensor, "batch d_vocab"], k: int) -> Float[Tensor, "batch d_vocab"]:
    """The k largest logits of each row, unchanged; every other logit -inf. k >= 1; k >= d_vocab keeps them all."""
    if k >= logits.shape[-1]:
        return logits
    top = logits.topk(k, dim=-1)
    return torch.full_like(logits, float("-inf")).scatter(-1, top.indices, top.values)


# --- notebooks/04_sampling.ipynb, code cell 15
def apply_top_p(logits: Float[Tensor, "batch d_vocab"], p: float) -> Float[Tensor, "batch d_vocab"]:
    """The nucleus of each row: its most probable tokens, until their total probability reaches p (0 < p <= 1); the rest -inf."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(dim=-1)
    mass_before = (
        sorted_probs.cumsum(dim=-1) - sorted_probs
    )  # probability of the tokens more probable than each one
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


# --- notebooks/04_sampling.ipynb, code cell 18
def check_token_id(name: str, value, d_vocab: int) -> int:
    """`value` as an int token id in [0, d_vocab), or a clear error."""
    value = utils.model.check_int(name, value, minimum=0)
    if value >= d_vocab:
        raise ValueError(
            f"{name} must be a token id in [0, {d_vocab}) (d_vocab = {d_vocab}), got {value}"
        )
    return value


def check_prompt(tokens, model: nn.Module, one_row: bool = False) -> None:
    """A clear error unless `model` is one of our transformers and `tokens` a [batch, posn] prompt of ids below its d_vocab."""
    if not isinstance(model, nn.Module) or not hasattr(getattr(model, "cfg", None), "n_ctx"):
        raise TypeError(
            f"model must be a DemoTransformer (or FusedTransformer, or your own class with a .cfg), got {type(model).__name__}"
        )
    if not isinstance(tokens, Tensor):
        raise TypeError(
            f"tokens (the prompt) must be a torch.Tensor [batch, posn] of token ids, got {type(tokens).__name__}; "
            f"e.g. torch.tensor([ids])"
        )
    if tokens.ndim != 2:
        hint = (
            "; for a single prompt add a batch dimension: tokens[None]" if tokens.ndim == 1 else ""
        )
        raise ValueError(
            f"tokens (the prompt) must have shape [batch, posn], got shape {tuple(tokens.shape)}{hint}"
        )
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"tokens (the prompt) must be token ids of dtype torch.int64 or torch.int32, got {tokens.dtype}; use tokens.long()"
        )
    if tokens.shape[1] == 0 or tokens.shape[0] == 0:
        raise ValueError(
            f"tokens (the prompt) has shape {tuple(tokens.shape)}: give at least one token to continue, such as "
            f"the <|endoftext|> id"
        )
    if one_row and tokens.shape[0] != 1:
        raise ValueError(
            f"beam_search continues one prompt: tokens must have shape [1, posn], got {tuple(tokens.shape)}"
        )
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= model.cfg.d_vocab:
        raise ValueError(
            f"tokens must be ids in [0, {model.cfg.d_vocab}) (d_vocab = {model.cfg.d_vocab}); got ids from {low} to {high}"
        )


def validate_generate_args(
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
) -> None:
    """Clear errors for generate's arguments, each naming what is allowed."""
    check_prompt(tokens, model)
    utils.model.check_int("max_new_tokens", max_new_tokens, minimum=0)
    utils.model.check_number(
        "temperature", temperature, minimum=0, allow_minimum=True, hint=" (0 = greedy)"
    )
    if top_k is not None:
        utils.model.check_int("top_k", top_k)
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real):
            raise TypeError(
                f"top_p must be None or a number in (0, 1], got {top_p!r} ({type(top_p).__name__})"
            )
        if not 0 < top_p <= 1:
            raise ValueError(
                f"top_p must be None or a number in (0, 1] (the probability mass to keep), got {top_p!r}"
            )
    if isinstance(frequency_penalty, bool) or not isinstance(frequency_penalty, numbers.Real):
        raise TypeError(
            f"frequency_penalty must be a finite number (0 = none), got {frequency_penalty!r} ({type(frequency_penalty).__name__})"
        )
    if not math.isfinite(frequency_penalty):
        raise ValueError(
            f"frequency_penalty must be a finite number (0 = none), got {frequency_penalty!r}"
        )
    if stop_token is not None:
        check_token_id("stop_token", stop_token, model.cfg.d_vocab)
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be True or False, got {use_cache!r}")
    if use_cache and not accepts_cache(model):
        raise TypeError(
            f"{type(model).__name__}.forward takes no `cache` argument, so it cannot use a KV cache: pass use_cache=False, "
            f"or give forward a `cache=None` argument as notebook 02's DemoTransformer has"
        )
    if seed is not None:
        utils.model.check_int("seed", seed, minimum=0)


def accepts_cache(model: nn.Module) -> bool:
    """Whether model.forward takes a `cache` argument (notebook 02's DemoTransformer and the fused twin do)."""
    return "cache" in inspect.signature(model.forward).parameters


# --- notebooks/04_sampling.ipynb, code cell 19
def next_logits(
    model: nn.Module, tokens: Int[Tensor, "batch posn"], cache: KVCache | None = None
) -> Float[Tensor, "batch d_vocab"]:
    """The logits for the token after `tokens` (all the tokens so far), from the last n_ctx of them: the model has no position
    beyond. With a cache, only the positions it does not hold yet run through the model (next section)."""
    start = max(
        0, tokens.shape[1] - model.cfg.n_ctx
    )  # where the window of the last n_ctx tokens begins
    if cache is None:
        return model(tokens[:, start:])[:, -1]
    if (
        start != cache.start
    ):  # the window moved: every position in it changed, so every cached key and value is stale
        cache.reset(start)
    held = cache.start + cache.length
    if held >= tokens.shape[1]:
        raise ValueError(
            f"the cache already holds all {tokens.shape[1]} tokens given; pass the tokens so far, new ones included"
        )
    return model(tokens[:, held:], cache=cache)[:, -1]


def sample_next_token(
    logits: Float[Tensor, "batch d_vocab"],
    tokens: Int[Tensor, "batch posn"],
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    frequency_penalty: float,
    generator: torch.Generator | None,
) -> Int[Tensor, "batch"]:
    """One token per row: the frequency penalty, then greedy (temperature 0), or temperature, top-k, top-p and a draw."""
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


# --- notebooks/04_sampling.ipynb, code cell 20
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
    """`tokens` [batch, posn] followed by up to `max_new_tokens` tokens per row: greedy when temperature == 0, else sampled.
    Rows that produce `stop_token` are padded with it; generation stops when every row has. `seed`: the same seed, the same tokens."""
    validate_generate_args(
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
    generator = None if seed is None else torch.Generator(device=tokens.device).manual_seed(seed)
    cache = KVCache(model.cfg, tokens.shape[0]) if use_cache else None
    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
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


# --- notebooks/04_sampling.ipynb, code cell 23
class KVCache:
    """Every layer's keys and values for the positions the model has already run, each [batch, posn, n_heads, d_head].
    `length`: the number of positions held. `start`: where they begin in the whole token sequence (0 until generation runs past
    n_ctx, when the window of positions slides)."""

    def __init__(self, cfg: utils.model.Config, batch: int):
        self.cfg = cfg
        self.batch = utils.model.check_int("batch", batch)
        self.start = 0
        self._keys: list[Tensor | None] = [
            None
        ] * cfg.n_layers  # each [batch, n_heads, n_ctx, d_head]: attention's own layout
        self._values: list[Tensor | None] = [None] * cfg.n_layers
        self._lengths = [0] * cfg.n_layers

    @property
    def length(self) -> int:
        """Positions held by every layer (during a forward, the layers already run hold the new positions too)."""
        return self._lengths[-1]

    def update(
        self,
        layer: int,
        k: Float[Tensor, "batch new_posn n_heads d_head"],
        v: Float[Tensor, "batch new_posn n_heads d_head"],
    ) -> tuple[
        Float[Tensor, "batch posn n_heads d_head"], Float[Tensor, "batch posn n_heads d_head"]
    ]:
        """Store `layer`'s keys and values for the new positions; return its keys and values for every position so far."""
        start, end = self._lengths[layer], self._lengths[layer] + k.shape[1]
        if end > self.cfg.n_ctx:
            raise ValueError(
                f"the cache holds {start} positions; {k.shape[1]} more would pass n_ctx = {self.cfg.n_ctx}"
            )
        if (
            self._keys[layer] is None
        ):  # room for n_ctx positions, in the dtype and on the device of the model's keys
            shape = (self.batch, self.cfg.n_heads, self.cfg.n_ctx, self.cfg.d_head)
            self._keys[layer], self._values[layer] = k.new_empty(shape), v.new_empty(shape)
        self._keys[layer][:, :, start:end] = k.transpose(1, 2)
        self._values[layer][:, :, start:end] = v.transpose(1, 2)
        self._lengths[layer] = end
        return self.keys(layer), self.values(layer)

    def keys(self, layer: int) -> Float[Tensor, "batch posn n_heads d_head"]:
        if self._keys[layer] is None:
            return torch.empty(self.batch, 0, self.cfg.n_heads, self.cfg.d_head)
        return self._keys[layer][:, :, : self._lengths[layer]].transpose(1, 2)

    def values(self, layer: int) -> Float[Tensor, "batch posn n_heads d_head"]:
        if self._values[layer] is None:
            return torch.empty(self.batch, 0, self.cfg.n_heads, self.cfg.d_head)
        return self._values[layer][:, :, : self._lengths[layer]].transpose(1, 2)

    def reset(self, start: int = 0) -> None:
        """Forget every position (the room stays), and start again at position `start` of the token sequence."""
        self._lengths = [0] * self.cfg.n_layers
        self.start = start

    def reorder(self, rows: Int[Tensor, "batch"]) -> None:
        """Row i of the cache becomes a copy of row rows[i] (beam search: each beam continues one of the previous beams)."""
        for layer, (keys, values) in enumerate(zip(self._keys, self._values)):
            if keys is not None:
                n = self._lengths[layer]
                keys[:, :, :n] = keys[:, :, :n].index_select(0, rows)
                values[:, :, :n] = values[:, :, :n].index_select(0, rows)

    def check(self, tokens: Tensor, cfg: utils.model.Config) -> None:
        """A clear error unless `tokens` [batch, new_posn] fit this cache: the model's config, the batch size, room within n_ctx."""
        if cfg != self.cfg:
            raise ValueError(
                f"this cache was made for another model's config ({self.cfg}); make one with KVCache(model.cfg, batch)"
            )
        if tokens.shape[0] != self.batch:
            raise ValueError(
                f"tokens has {tokens.shape[0]} rows, but this cache was made for batch = {self.batch}"
            )
        if self.length + tokens.shape[1] > cfg.n_ctx:
            raise ValueError(
                f"the cache holds {self.length} positions, and {tokens.shape[1]} more would pass n_ctx = {cfg.n_ctx}: "
                f"start again on the last n_ctx tokens (cache.reset(), then the whole window; next_logits does this)"
            )

    def __repr__(self) -> str:
        return (
            f"KVCache({self.cfg.n_layers} layers, batch {self.batch}, {self.length} of {self.cfg.n_ctx} positions held, "
            f"starting at token {self.start})"
        )


# --- notebooks/04_sampling.ipynb, code cell 24
def attention_with_cache(
    attn: utils.model.Attention,
    x: Float[Tensor, "batch new_posn d_model"],
    cache: KVCache,
    layer: int,
) -> Float[Tensor, "batch new_posn d_model"]:
    """Attention for the new positions only: their queries attend to every key so far, the cached ones and their own."""
    q = (
        einops.einsum(
            x, attn.W_Q, "batch posn d_model, n_heads d_model d_head -> batch posn n_heads d_head"
        )
        + attn.b_Q
    )
    k = (
        einops.einsum(
            x, attn.W_K, "batch posn d_model, n_heads d_model d_head -> batch posn n_heads d_head"
        )
        + attn.b_K
    )
    v = (
        einops.einsum(
            x, attn.W_V, "batch posn d_model, n_heads d_model d_head -> batch posn n_heads d_head"
        )
        + attn.b_V
    )
    k, v = cache.update(layer, k, v)  # [batch, past + new_posn, n_heads, d_head]
    new_posn, all_posn = x.shape[1], k.shape[1]
    past = all_posn - new_posn
    scores = einops.einsum(
        q,
        k,
        "batch query_posn n_heads d_head, batch key_posn n_heads d_head -> batch n_heads query_posn key_posn",
    )
    future = torch.triu(
        torch.ones(new_posn, all_posn, dtype=torch.bool, device=x.device), diagonal=past + 1
    )
    pattern = (scores / math.sqrt(attn.cfg.d_head)).masked_fill(future, attn.IGNORE).softmax(dim=-1)
    z = einops.einsum(
        pattern,
        v,
        "batch n_heads query_posn key_posn, batch key_posn n_heads d_head -> batch query_posn n_heads d_head",
    )
    return (
        einops.einsum(
            z, attn.W_O, "batch posn n_heads d_head, n_heads d_head d_model -> batch posn d_model"
        )
        + attn.b_O
    )


def forward_with_cache(
    model: utils.model.DemoTransformer, tokens: Int[Tensor, "batch new_posn"], cache: KVCache
) -> Float[Tensor, "batch new_posn d_vocab"]:
    """The logits of the new positions `tokens`, which follow the cache's positions; the cache then holds them too."""
    cache.check(tokens, model.cfg)  # the batch size, and room for the new positions within n_ctx
    past = cache.length
    residual = (
        model.embed(tokens) + model.pos_embed.W_pos[past : past + tokens.shape[1]]
    )  # positions broadcast over the batch
    for layer, block in enumerate(model.blocks):
        residual = residual + attention_with_cache(block.attn, block.ln1(residual), cache, layer)
        if not model.cfg.attn_only:  # notebook 05's attention-only models have no MLP
            residual = residual + block.mlp(block.ln2(residual))
    return model.unembed(model.ln_final(residual))


# --- notebooks/04_sampling.ipynb, code cell 29
def ban_repeated_ngrams(
    tokens: Int[Tensor, "batch posn"], log_probs: Float[Tensor, "batch d_vocab"], n: int
) -> Float[Tensor, "batch d_vocab"]:
    """log_probs with -inf for each token that would complete an n-gram already in its row of tokens (no_repeat_ngram_size=n)."""
    posn = tokens.shape[1]
    if n == 0 or posn < n:
        return log_probs
    windows = tokens.unfold(1, n, 1)  # [batch, posn - n + 1, n]: every n-gram of each row
    prefix = tokens[
        :, posn - n + 1 :
    ]  # [batch, n - 1]: the last n - 1 tokens, which the next token would extend to an n-gram
    repeats = (windows[..., :-1] == prefix[:, None]).all(
        dim=-1
    )  # [batch, posn - n + 1]: n-grams that start like that
    rows, starts = repeats.nonzero(as_tuple=True)
    banned = torch.zeros_like(log_probs, dtype=torch.bool)
    banned[rows, windows[rows, starts, -1]] = True  # each such n-gram bans its own last token
    return log_probs.masked_fill(banned, float("-inf"))


def validate_beam_search_args(
    model, tokens, num_beams, max_new_tokens, length_penalty, no_repeat_ngram_size, stop_token
) -> None:
    """Clear errors for beam_search's arguments, each naming what is allowed."""
    check_prompt(tokens, model, one_row=True)
    utils.model.check_int("num_beams", num_beams)
    utils.model.check_int("max_new_tokens", max_new_tokens)
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, numbers.Real):
        raise TypeError(
            f"length_penalty must be a finite number (1 = divide by the length), got {length_penalty!r} "
            f"({type(length_penalty).__name__})"
        )
    if not math.isfinite(length_penalty):
        raise ValueError(
            f"length_penalty must be a finite number (1 = divide by the length), got {length_penalty!r}"
        )
    utils.model.check_int("no_repeat_ngram_size", no_repeat_ngram_size, minimum=0)
    if stop_token is not None:
        check_token_id("stop_token", stop_token, model.cfg.d_vocab)
    if not accepts_cache(model):
        raise TypeError(
            f"{type(model).__name__}.forward takes no `cache` argument; beam_search needs one (notebook 02's "
            f"DemoTransformer.forward has `cache=None`)"
        )


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
    """The finished beams, best first: (prompt and new tokens, sum of the new tokens' log-probabilities / their number **
    length_penalty). Hugging Face's beam search with early_stopping=True."""
    validate_beam_search_args(
        model, tokens, num_beams, max_new_tokens, length_penalty, no_repeat_ngram_size, stop_token
    )
    cache = KVCache(model.cfg, num_beams)
    beams = tokens.repeat(num_beams, 1)  # [num_beams, posn]: copies of the prompt
    scores = torch.full((num_beams,), -1e9, device=tokens.device)
    scores[0] = 0.0  # only the first copy is live at first
    finished: list[tuple[Tensor, float]] = []
    for step in range(max_new_tokens):
        log_probs = (
            next_logits(model, beams, cache).float().log_softmax(dim=-1)
        )  # [num_beams, d_vocab]
        if no_repeat_ngram_size:
            log_probs = ban_repeated_ngrams(beams, log_probs, no_repeat_ngram_size)
        candidates = (
            scores[:, None] + log_probs
        ).flatten()  # [num_beams * d_vocab]: beam b's token t at b * d_vocab + t
        top_scores, top = candidates.topk(2 * num_beams)
        beam, token = top // log_probs.shape[-1], top % log_probs.shape[-1]
        sequences = torch.cat([beams[beam], token[:, None]], dim=1)  # [2 * num_beams, posn + 1]
        ends = (
            token == stop_token
            if stop_token is not None
            else torch.zeros_like(token, dtype=torch.bool)
        )
        if step == max_new_tokens - 1:
            ends = torch.ones_like(ends)
        for i in range(num_beams):  # only the best num_beams candidates may finish
            if ends[i]:
                finished.append(
                    (sequences[i], (top_scores[i] / (step + 1) ** length_penalty).item())
                )
        finished = sorted(finished, key=lambda text_and_score: text_and_score[1], reverse=True)[
            :num_beams
        ]
        if len(finished) == num_beams or ends.all():
            break
        running = top_scores - 1e9 * ends  # a candidate that ended is out of the running
        keep = running.topk(num_beams).indices
        beams, scores = sequences[keep], running[keep]
        cache.reorder(beam[keep])
    return finished
