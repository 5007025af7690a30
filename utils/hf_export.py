"""Your model in Hugging Face's format, and back (notebook 05's hand-off).

`to_hf_gpt2(model)` gives a transformers `GPT2LMHeadModel` with your model's weights: the same
logits (to float32 rounding), so `transformers` can run `generate` on it, `save_pretrained` it and
push it to the hub, and TransformerLens 4.x (`TransformerBridge`) can wrap it.
`save_hf_folder(model, folder, tokenizer)` writes that `save_pretrained` folder, with the tokenizer;
`load_hf_folder(folder)` reads one back as a GPT2LMHeadModel, and `from_hf_gpt2(hf_model)` is the
way back to our classes, exact too.

What GPT-2's format holds, and so what it refuses: GPT-2 has no unembedding bias, so a model whose
`b_U` is not zero (training moves it) is refused unless `drop_unembed_bias=True`, which says how
much the logits change. Its W_U may be its own (`tie_word_embeddings=False`, saved as `lm_head`).
A model of attention alone (notebook 05's induction model) becomes a GPT-2 whose MLPs are zero
(they then add exactly nothing), marked `attn_only` in its config so that the way back drops them.
Every head must be d_model / n_heads wide, as GPT-2's are.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import einops
import torch
import torch.nn as nn

import utils.model
from utils.resources import gpt2_config_for
from utils.validation import (
    build_model,
    check_gpt2_compatible,
    require_bool,
    require_int,
    require_model,
    require_path,
)


def _inner(model):
    return getattr(model, "_orig_mod", model)  # a torch.compile'd model: the module inside


def to_hf_gpt2(model: nn.Module, drop_unembed_bias: bool = False, eos_token_id: int | None = None):
    """A transformers GPT2LMHeadModel with `model`'s weights (explicit, fused or hooked; the same
    logits), in eval mode, on the model's device and in its dtype. eos_token_id: the tokenizer's
    end-of-text id, which generate stops at; by default the last id, as in GPT-2's vocabulary (a
    vocabulary padded for the GPU, 50,304 ids, has it at 50,256: pass tokenizer.eos_token_id)."""
    from transformers import GPT2LMHeadModel

    model = _inner(model)
    require_model(model)
    drop_unembed_bias = require_bool("drop_unembed_bias", drop_unembed_bias)  # 'False' is truthy
    cfg = model.cfg
    if eos_token_id is None:
        eos_token_id = cfg.d_vocab - 1
    eos_token_id = require_int("eos_token_id", eos_token_id, minimum=0, maximum=cfg.d_vocab - 1)
    if cfg.n_heads * cfg.d_head != cfg.d_model:
        raise ValueError(
            f"GPT-2's heads split d_model: n_heads * d_head must be d_model, got {cfg.n_heads} * "
            f"{cfg.d_head} != {cfg.d_model}, which Hugging Face's GPT-2 cannot hold"
        )
    ours = {name: p.detach() for name, p in model.state_dict().items()}
    b_U = ours["unembed.b_U"]
    if bool(b_U.any()) and not drop_unembed_bias:
        raise ValueError(
            f"the model's unembedding bias b_U is not zero (max |b_U| = {b_U.abs().max():.3g}), "
            "and GPT-2's format has none: pass drop_unembed_bias=True to export without it (each "
            "token's logit then loses its b_U: other probabilities), or train with b_U frozen"
        )
    tied = torch.equal(ours["unembed.W_U"], ours["embed.W_E"].T)
    hf_config = gpt2_config_for(
        dataclasses.replace(cfg, attn_only=False),
        tie_word_embeddings=tied,
        attn_only=cfg.attn_only,  # kept in config.json: the way back drops the zero MLPs
        bos_token_id=eos_token_id,  # GPT-2 starts and ends texts with <|endoftext|>
        eos_token_id=eos_token_id,
    )
    weight = ours["embed.W_E"]
    hf = GPT2LMHeadModel(hf_config).to(device=weight.device, dtype=weight.dtype)
    hf.loss_type = "ForCausalLM"  # the default, named so transformers does not warn on every loss
    missing, unexpected = hf.load_state_dict(_hf_state_dict(ours, cfg, tied, hf), strict=False)
    if unexpected or [key for key in missing if not key.endswith("attn.bias")]:
        raise RuntimeError(f"export incomplete: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def _hf_state_dict(ours: dict, cfg, tied: bool, hf) -> dict:
    """Our parameters under GPT-2's names and layouts: the reverse of convert_hf_state_dict."""
    heads = dict(n_heads=cfg.n_heads)
    sd = {
        "transformer.wte.weight": ours["embed.W_E"],
        "transformer.wpe.weight": ours["pos_embed.W_pos"],
        "transformer.ln_f.weight": ours["ln_final.w"],
        "transformer.ln_f.bias": ours["ln_final.b"],
        "lm_head.weight": ours["embed.W_E"] if tied else ours["unembed.W_U"].T,
    }
    for layer in range(cfg.n_layers):
        our, hf_name = f"blocks.{layer}.", f"transformer.h.{layer}."
        qkv = [
            einops.rearrange(
                ours[our + f"attn.W_{n}"], "n_heads d_model d_head -> d_model (n_heads d_head)"
            )
            for n in "QKV"
        ]
        sd[hf_name + "attn.c_attn.weight"] = torch.cat(qkv, dim=1)  # Conv1D: [d_model, 3 d_model]
        sd[hf_name + "attn.c_attn.bias"] = torch.cat(
            [ours[our + f"attn.b_{n}"].flatten() for n in "QKV"]
        )
        sd[hf_name + "attn.c_proj.weight"] = einops.rearrange(
            ours[our + "attn.W_O"], "n_heads d_head d_model -> (n_heads d_head) d_model", **heads
        )
        sd[hf_name + "attn.c_proj.bias"] = ours[our + "attn.b_O"]
        sd[hf_name + "ln_1.weight"], sd[hf_name + "ln_1.bias"] = (
            ours[our + "ln1.w"],
            ours[our + "ln1.b"],
        )
        if cfg.attn_only:  # GPT-2 has an MLP in every block: a zero one adds exactly nothing
            block = hf.transformer.h[layer]
            for name, tensor in block.mlp.state_dict().items():
                sd[hf_name + "mlp." + name] = torch.zeros_like(tensor)
            sd[hf_name + "ln_2.weight"] = torch.ones_like(ours[our + "ln1.w"])
            sd[hf_name + "ln_2.bias"] = torch.zeros_like(ours[our + "ln1.b"])
            continue
        sd[hf_name + "ln_2.weight"], sd[hf_name + "ln_2.bias"] = (
            ours[our + "ln2.w"],
            ours[our + "ln2.b"],
        )
        sd[hf_name + "mlp.c_fc.weight"] = ours[our + "mlp.W_in"]
        sd[hf_name + "mlp.c_fc.bias"] = ours[our + "mlp.b_in"]
        sd[hf_name + "mlp.c_proj.weight"] = ours[our + "mlp.W_out"]
        sd[hf_name + "mlp.c_proj.bias"] = ours[our + "mlp.b_out"]
    return sd


def from_hf_gpt2(hf_model, model_class=None) -> nn.Module:
    """Our model (`model_class`, DemoTransformer unless given) with a Hugging Face GPT-2's weights:
    GPT-2's own, or one that to_hf_gpt2 exported (an lm_head of its own, zero MLPs of a model of
    attention alone), in eval mode on the HF model's device."""
    model_class = model_class or utils.model.DemoTransformer
    hf_config = getattr(hf_model, "config", None)
    attn_only = bool(getattr(hf_config, "attn_only", False))
    cfg_of = lambda config: utils.model.config_from_hf(config, attn_only=attn_only)  # noqa: E731
    if hf_config is None or not hasattr(hf_config, "n_layer"):
        raise TypeError(
            "hf_model must be a Hugging Face GPT-2 (GPT2LMHeadModel), got "
            f"{type(hf_model).__name__}"
        )
    model = build_model(model_class, cfg_of(hf_config))  # a class that takes a Config
    check_gpt2_compatible(model, hf_model, cfg_of, untied_ok=True)
    hf_sd = hf_model.state_dict()
    if attn_only:
        nonzero = [
            key for key, t in hf_sd.items() if ".mlp." in key and t.is_floating_point() and t.any()
        ]
        if nonzero:
            raise ValueError(
                f"hf_model's config says attn_only, but its MLPs are not zero ({nonzero[0]} ...): "
                "they would be dropped, and the logits change"
            )
    sd = utils.model.convert_hf_state_dict(hf_sd, model.cfg)
    lm_head = getattr(hf_model, "lm_head", None)
    if lm_head is not None:  # tied or not, the unembedding is lm_head's
        sd["unembed.W_U"] = lm_head.weight.detach().T.clone().contiguous()
    if attn_only:
        sd = {k: v for k, v in sd.items() if ".mlp." not in k and ".ln2." not in k}
    model.load_state_dict(sd, strict=True)
    weight = hf_model.transformer.wte.weight
    return model.to(device=weight.device, dtype=weight.dtype).eval()


def save_hf_folder(
    model: nn.Module,
    folder: str | Path,
    tokenizer=None,
    drop_unembed_bias: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write `model` as a Hugging Face `save_pretrained` folder (config.json and its weights), with
    `tokenizer` (a Hugging Face tokenizer, e.g. utils.resources.load_tokenizer()) if given:
    `GPT2LMHeadModel.from_pretrained(folder)` loads it, offline. A folder that holds anything
    already is refused unless overwrite=True (nothing of yours is replaced by surprise)."""
    overwrite = require_bool("overwrite", overwrite)  # 'no' is truthy: it must not replace files
    folder = require_path("folder must be a folder path, such as 'my_gpt2'", folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not overwrite)):
        raise FileExistsError(
            f"{folder} already exists and is not an empty folder: give a new folder, or "
            "overwrite=True to write the export over what is there"
        )
    require_model(_inner(model))
    d_vocab = _inner(model).cfg.d_vocab
    if tokenizer is not None and len(tokenizer) > d_vocab:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens, more than the model's d_vocab "
            f"{d_vocab}: give the tokenizer the model was trained with"
        )  # fewer is a vocabulary padded for the GPU (GPT-2's 50,257 tokens, 50,304 ids)
    eos = getattr(tokenizer, "eos_token_id", None)  # where generate stops, padded or not
    hf = to_hf_gpt2(model, drop_unembed_bias=drop_unembed_bias, eos_token_id=eos)
    with _no_progress_bars():  # one small file: no bar left behind in the notebook
        hf.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
    return folder


def load_hf_folder(folder: str | Path):
    """GPT2LMHeadModel.from_pretrained(folder), in eval mode, without its progress bar."""
    from transformers import GPT2LMHeadModel

    folder = require_path("folder must be the path of a save_pretrained folder", folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no config.json: not a save_pretrained folder")
    with _no_progress_bars():
        return GPT2LMHeadModel.from_pretrained(folder).eval()


@contextlib.contextmanager
def _no_progress_bars():
    from transformers.utils import logging

    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            logging.enable_progress_bar()
