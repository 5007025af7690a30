"""What the GPU we run on can do, and the training settings that follow: precision, micro-batch,
compilation, peak FLOPs.

Everything here works from a plain description of the device (`GPU`), so the choices are tested on
CPU-only machines for the GPUs learners have (Colab's T4, L4 and A100, an H100) without any of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from utils.configs import require_run_config
from utils.validation import require_bool, require_config_fields, require_int, require_number

GiB = 1024**3

# Dense (not 2:4-sparse) tensor-core peaks from NVIDIA's datasheets, in FLOP/s, per precision that
# the GPU runs natively. Patterns are matched against torch.cuda.get_device_name(); order matters
# (the first match wins), and \b keeps "A10" from matching "A100" or "A10G". A GPU not in this table
# gets no MFU figure rather than a wrong one.
PEAK_FLOPS = [
    (
        r"\bMIG\b",
        {},
    ),  # a slice of a GPU (e.g. "... MIG 1g.10gb"): the whole chip's peak would be wrong
    (r"\bH100\b.*\bPCIe\b", {"bfloat16": 756e12, "float16": 756e12}),
    (r"\bH100\b.*\bNVL\b", {"bfloat16": 835e12, "float16": 835e12}),
    (r"\bH100\b", {"bfloat16": 989e12, "float16": 989e12}),  # SXM ("NVIDIA H100 80GB HBM3")
    (r"\bH200\b.*\bNVL\b", {"bfloat16": 835e12, "float16": 835e12}),
    (r"\bH200\b", {"bfloat16": 989e12, "float16": 989e12}),
    (r"\bA100\b", {"bfloat16": 312e12, "float16": 312e12}),  # 40 and 80 GB, SXM and PCIe alike
    (r"\bL40S\b", {"bfloat16": 362e12, "float16": 362e12}),
    (r"\bL4\b", {"bfloat16": 121e12, "float16": 121e12}),
    (r"\bA10\b", {"bfloat16": 125e12, "float16": 125e12}),
    (r"\bT4\b", {"float16": 65e12}),  # Turing: no bf16 tensor cores
    (r"\bV100\b.*\bSXM2\b", {"float16": 125e12}),  # Volta: no bf16 tensor cores
    (r"\bV100\b.*\bPCIE\b", {"float16": 112e12}),
]

# torch.compile's first step for GPT-2 small: 25-36 s on an H100 host;
# slower CPUs (Colab) take longer
COMPILE_SECONDS = 60
# fraction of an eager step that compiling saved in our H100 measurements (about half),
# rounded down
COMPILE_SPEEDUP = 0.4
EAGER_MFU = 0.2  # what the eager fused model reaches, to estimate a step's time before running one
# Headroom over the activation estimate (allocator fragmentation, workspaces). Measured on an H100
# for GPT-2 small, eager fused model: peak 14.9 GiB at 16 sequences in bf16 and 9.2 GiB at 8 in
# float16; with 1.15 the estimate is 18.5 and 10.5 GiB.
MEMORY_SAFETY = 1.15


@dataclass(frozen=True)
class GPU:
    name: str
    capability: tuple[int, int]
    total_memory: int  # bytes
    free_memory: int  # bytes this process may still allocate


def describe_gpu(device: int = 0) -> GPU:
    """The visible CUDA device, with the memory this process may use (a
    set_per_process_memory_fraction cap counts)."""
    if not torch.cuda.is_available():
        raise RuntimeError("describe_gpu: PyTorch sees no CUDA GPU here (use the CPU: gpu=None)")
    device = require_int("device", device, minimum=0, maximum=torch.cuda.device_count() - 1)
    props = torch.cuda.get_device_properties(device)
    free, total = torch.cuda.mem_get_info(device)
    get_fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    if get_fraction is not None:
        cap = int(get_fraction(device) * total) - torch.cuda.memory_reserved(device)
        free = min(free, cap)
    return GPU(props.name, (props.major, props.minor), total, free)


def padded_vocab_size(d_vocab: int, multiple: int = 64) -> int:
    """The vocabulary rounded up to a multiple of 64 (GPT-2's 50257 -> 50304): GPU matmuls run
    faster on such shapes."""
    d_vocab = require_int("d_vocab", d_vocab)
    return -(-d_vocab // require_int("multiple", multiple)) * multiple


def native_autocast_dtype(gpu: GPU) -> str:
    """bfloat16 on Ampere and newer (compute capability 8.0+); older GPUs (T4, V100) emulate it
    slowly, so float16 there."""
    return "bfloat16" if gpu.capability >= (8, 0) else "float16"


def model_flops_per_token(cfg) -> float:
    """nanoGPT's estimate of a training step's work per token, for MFU: 6N (forward and backward
    through the weights) + 12·L·H·Q·T (attention scores and mixing)."""
    require_config_fields("model_flops_per_token: cfg", cfg)
    # N counts the weights that take part in matmuls: the blocks and W_U (W_E, W_pos are lookups)
    d_mlp = 0 if cfg.attn_only else cfg.d_mlp
    per_layer = 4 * cfg.d_model * cfg.n_heads * cfg.d_head + 2 * cfg.d_model * d_mlp
    n_params = cfg.n_layers * per_layer + cfg.d_vocab * cfg.d_model
    return 6 * n_params + 12 * cfg.n_layers * cfg.n_heads * cfg.d_head * cfg.n_ctx


def peak_flops(name: str, dtype: str = "bfloat16") -> float | None:
    """The GPU's dense tensor-core peak for `dtype`, or None if the GPU is unknown or has no tensor
    cores for it."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a GPU's name, such as 'NVIDIA A100-SXM4-40GB', got {name!r}")
    for pattern, peaks in PEAK_FLOPS:
        if re.search(pattern, name):
            return peaks.get(dtype)
    return None


def training_memory(cfg, micro_batch: int, dtype: str | None) -> int:
    """Estimated peak bytes of a training step: weights, gradients and AdamW's two moments in
    float32 (16 bytes per parameter), plus activations: about 34 bytes per layer, position and
    d_model in 16-bit (Korthikanti et al. 2022, with fused attention), and the logits (16-bit, their
    float32 copy for the loss, and both gradients: 12 bytes per position and vocabulary entry)."""
    if dtype not in (None, "bfloat16", "float16"):
        raise ValueError(f"dtype must be None (float32), 'bfloat16' or 'float16', got {dtype!r}")
    require_config_fields("training_memory: cfg", cfg)
    micro_batch = require_int("micro_batch", micro_batch)
    n_params = (
        cfg.d_vocab * cfg.d_model * 2
        + cfg.n_ctx * cfg.d_model
        + cfg.n_layers * (4 * cfg.d_model * cfg.n_heads * cfg.d_head + 2 * cfg.d_model * cfg.d_mlp)
    )
    bytes_per_value = 1 if dtype in ("bfloat16", "float16") else 2
    per_sequence = cfg.n_ctx * (
        34 * cfg.n_layers * cfg.d_model * bytes_per_value + 12 * cfg.d_vocab
    )
    return int(16 * n_params + MEMORY_SAFETY * micro_batch * per_sequence)


@dataclass(frozen=True)
class Settings:
    device: str
    autocast: str | None  # "bfloat16", "float16" or None (float32)
    micro_batch_size: int
    accumulation: int
    compile: bool
    peak_flops: float | None
    reasons: tuple[str, ...]

    def training_args(self) -> dict:
        """Keyword arguments for TrainingArgs."""
        return dict(
            device=self.device,
            autocast=self.autocast,
            micro_batch_size=self.micro_batch_size,
            compile=self.compile,
        )

    def describe(self) -> str:
        return "\n".join(self.reasons)


def choose_settings(
    gpu: GPU | None,
    cfg,
    batch_size: int,
    max_steps: int,
    flops_per_token: float,
    dtype: str | None = None,
    compile: bool | None = None,
) -> Settings:
    """Precision, micro-batch, gradient accumulation and compilation for training `cfg` on `gpu`
    (None: the CPU). `dtype` and `compile` override the choice."""
    batch_size, max_steps = (
        require_int("batch_size", batch_size),
        require_int("max_steps", max_steps),
    )
    flops_per_token = require_number("flops_per_token", flops_per_token)
    if gpu is not None and not isinstance(gpu, GPU):
        raise TypeError(
            f"gpu must be None (the CPU) or a GPU, such as describe_gpu(), got {gpu!r:.60}"
        )
    if compile is not None:
        compile = require_bool("compile", compile)  # None: chosen here; 'no' is truthy
    if gpu is None:
        return Settings(
            "cpu",
            None,
            batch_size,
            1,
            bool(compile),
            None,
            (
                f"CPU: float32, batch of {batch_size} in one micro-batch, "
                + (
                    "torch.compile on (asked for)"
                    if compile
                    else "no torch.compile (on a CPU it compiles for minutes)"
                ),
            ),
        )
    reasons = [
        f"GPU: {gpu.name}, compute capability {gpu.capability[0]}.{gpu.capability[1]}, "
        f"{gpu.free_memory / GiB:.1f} of {gpu.total_memory / GiB:.1f} GiB free"
    ]
    native = native_autocast_dtype(gpu)
    dtype = dtype or native
    if dtype not in ("bfloat16", "float16"):
        raise ValueError(f"dtype must be 'bfloat16' or 'float16', got {dtype!r}")
    reasons.append(
        f"precision: {dtype} autocast"
        + (" with a gradient scaler (float16's range is narrow)" if dtype == "float16" else "")
        + ("" if dtype == native else f" (asked for; this GPU's native choice is {native})")
        + (" -- no bf16 tensor cores before compute capability 8.0" if native == "float16" else "")
    )

    fits = [
        m
        for m in range(batch_size, 0, -1)
        if batch_size % m == 0 and training_memory(cfg, m, dtype) <= gpu.free_memory
    ]
    if not fits:
        raise RuntimeError(
            f"even one sequence of {cfg.n_ctx} tokens needs about "
            f"{training_memory(cfg, 1, dtype) / GiB:.1f} GiB, more than the "
            f"{gpu.free_memory / GiB:.1f} GiB free on {gpu.name}: use a smaller model or n_ctx"
        )
    micro = fits[0]
    reasons.append(
        (
            f"batch: {batch_size} sequences per optimizer step, as {batch_size // micro} "
            f"micro-batch(es) of {micro} (about {training_memory(cfg, micro, dtype) / GiB:.1f} GiB "
            "estimated)"
        )
        + (", gradients accumulated between them" if micro < batch_size else "")
    )

    peak = peak_flops(gpu.name, dtype)
    reasons.append(
        f"peak: {peak / 1e12:.0f} TFLOP/s {dtype} (dense), for MFU"
        if peak
        else f"peak: {gpu.name} is not in utils.gpu.PEAK_FLOPS for {dtype}, so no MFU figure"
    )
    if compile is None:
        if peak:
            step_seconds = flops_per_token * batch_size * cfg.n_ctx / (peak * EAGER_MFU)
            saved = max_steps * step_seconds * COMPILE_SPEEDUP
            compile = saved > COMPILE_SECONDS
            reasons.append(
                f"torch.compile: {'on' if compile else 'off'} -- {max_steps} steps of about "
                f"{step_seconds * 1e3:.0f} ms would save about {saved:.0f} s, against about "
                f"{COMPILE_SECONDS} s of compiling before the first step"
            )
        else:
            compile = max_steps >= 1000
            reasons.append(
                f"torch.compile: {'on' if compile else 'off'} -- unknown GPU, so compiled only "
                f"for runs of 1000+ steps (this one: {max_steps})"
            )
    else:
        reasons.append(f"torch.compile: {'on' if compile else 'off'} (asked for)")
    if compile:
        reasons.append(
            "   the first step waits while torch.compile builds the kernels (about "
            f"{COMPILE_SECONDS} s or less)"
        )
    return Settings("cuda", dtype, micro, batch_size // micro, compile, peak, tuple(reasons))


def settings_for_this_machine(
    run_cfg, cfg, max_steps: int, flops_per_token: float | None = None, **overrides
) -> Settings:
    """choose_settings for the device the run config selects (run_cfg.device: cuda for the gpu
    config when there is one); flops_per_token by default model_flops_per_token(cfg)."""
    run_cfg = require_run_config(run_cfg)
    gpu = describe_gpu() if run_cfg.device == "cuda" else None
    if flops_per_token is None:
        flops_per_token = model_flops_per_token(cfg)
    return choose_settings(
        gpu, cfg, run_cfg.train["batch_size"], max_steps, flops_per_token, **overrides
    )
