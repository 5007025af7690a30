"""utils/gpu.py: the settings the `gpu` config chooses for the GPUs learners have, decided from
device descriptions (no GPU needed)."""

import pytest

from utils.gpu import GPU, GiB, choose_settings, peak_flops, training_memory
from utils.model import Config
from utils.gpu import model_flops_per_token

GPT2_SMALL = Config(
    d_vocab=50304
)  # GPT-2 small with the vocabulary padded to a multiple of 64, as the gpu config trains it
FLOPS = model_flops_per_token(GPT2_SMALL)

# name as torch.cuda.get_device_name() gives it, capability, total memory; free = total less the
# CUDA context
DEVICES = {
    "T4": GPU("Tesla T4", (7, 5), int(15.0 * GiB), int(14.6 * GiB)),
    "L4": GPU("NVIDIA L4", (8, 9), int(22.5 * GiB), int(22.0 * GiB)),
    "A100 40GB": GPU("NVIDIA A100-SXM4-40GB", (8, 0), int(39.6 * GiB), int(39.1 * GiB)),
    "A100 80GB": GPU("NVIDIA A100-SXM4-80GB", (8, 0), int(79.3 * GiB), int(78.8 * GiB)),
    "H100 SXM": GPU("NVIDIA H100 80GB HBM3", (9, 0), int(79.2 * GiB), int(78.7 * GiB)),
    "H100 PCIe": GPU("NVIDIA H100 PCIe", (9, 0), int(79.2 * GiB), int(78.7 * GiB)),
    "unknown": GPU("NVIDIA GeForce RTX 4090", (8, 9), int(23.6 * GiB), int(23.1 * GiB)),
}

# device -> autocast dtype, micro-batch (of 16), peak FLOP/s (None: no MFU)
EXPECTED = {
    "T4": ("float16", 8, 65e12),
    "L4": ("bfloat16", 16, 121e12),
    "A100 40GB": ("bfloat16", 16, 312e12),
    "A100 80GB": ("bfloat16", 16, 312e12),
    "H100 SXM": ("bfloat16", 16, 989e12),
    "H100 PCIe": ("bfloat16", 16, 756e12),
    "unknown": ("bfloat16", 16, None),
}


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_config_choices(device):
    dtype, micro, peak = EXPECTED[device]
    settings = choose_settings(
        DEVICES[device], GPT2_SMALL, batch_size=16, max_steps=2000, flops_per_token=FLOPS
    )
    assert (
        settings.autocast,
        settings.micro_batch_size,
        settings.accumulation,
        settings.peak_flops,
    ) == (dtype, micro, 16 // micro, peak)
    assert training_memory(GPT2_SMALL, micro, dtype) <= DEVICES[device].free_memory
    assert settings.training_args()["device"] == "cuda"
    text = settings.describe()
    assert (
        DEVICES[device].name in text
        and dtype in text
        and ("gradient scaler" in text) == (dtype == "float16")
    )
    assert ("no MFU figure" in text) == (peak is None)


def test_a_t4_gets_float16_because_bf16_would_be_emulated():
    text = choose_settings(DEVICES["T4"], GPT2_SMALL, 16, 2000, FLOPS).describe()
    assert "no bf16 tensor cores" in text and "2 micro-batch(es) of 8" in text


@pytest.mark.parametrize(
    "name, dtype, expected",
    [
        ("NVIDIA A10", "bfloat16", 125e12),
        ("NVIDIA A100-SXM4-40GB", "bfloat16", 312e12),
        ("NVIDIA A100 80GB PCIe", "bfloat16", 312e12),
        ("NVIDIA A10G", "bfloat16", None),  # a different chip (AWS): not the A10's figure
        ("NVIDIA H100 80GB HBM3", "bfloat16", 989e12),
        ("NVIDIA H100 PCIe", "bfloat16", 756e12),
        ("NVIDIA H100 NVL", "bfloat16", 835e12),
        ("NVIDIA H200", "bfloat16", 989e12),
        ("Tesla T4", "float16", 65e12),
        ("Tesla T4", "bfloat16", None),
        ("NVIDIA L4", "bfloat16", 121e12),
        ("NVIDIA L40S", "bfloat16", 362e12),
        ("NVIDIA GeForce RTX 4090", "bfloat16", None),
        ("Tesla V100-SXM2-16GB", "float16", 125e12),
        ("Tesla V100-PCIE-32GB", "float16", 112e12),
        ("Tesla V100-SXM2-16GB", "bfloat16", None),
        (
            "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
            "bfloat16",
            None,
        ),  # a slice of the chip: its peak is not the chip's
    ],
)
def test_peak_flops_match_the_right_gpu_and_precision(name, dtype, expected):
    assert peak_flops(name, dtype) == expected


def test_compile_only_where_it_pays():
    h100 = DEVICES["H100 SXM"]
    short = choose_settings(h100, GPT2_SMALL, 16, 64, FLOPS)  # the offline corpus: 64 steps
    long = choose_settings(h100, GPT2_SMALL, 16, 5000, FLOPS)
    assert not short.compile and long.compile
    assert "torch.compile: off" in short.describe() and "first step waits" in long.describe()
    assert choose_settings(
        DEVICES["T4"], GPT2_SMALL, 16, 200, FLOPS
    ).compile  # a slow GPU repays compiling sooner
    assert not choose_settings(DEVICES["unknown"], GPT2_SMALL, 16, 500, FLOPS).compile
    assert choose_settings(h100, GPT2_SMALL, 16, 64, FLOPS, compile=True).compile


def test_forcing_float16_and_a_small_memory_cap():
    capped = GPU(
        "NVIDIA H100 80GB HBM3", (9, 0), int(79.2 * GiB), int(15 * GiB)
    )  # set_per_process_memory_fraction(15 GB)
    settings = choose_settings(capped, GPT2_SMALL, 16, 64, FLOPS, dtype="float16")
    assert (
        settings.autocast == "float16"
        and settings.micro_batch_size == 8
        and "asked for" in settings.describe()
    )


def test_too_little_memory_says_so():
    tiny = GPU("Tesla T4", (7, 5), int(15 * GiB), int(2 * GiB))
    with pytest.raises(
        RuntimeError,
        match="even one sequence of 1024 tokens needs about .* GiB, more than the 2.0 GiB free",
    ):
        choose_settings(tiny, GPT2_SMALL, 16, 64, FLOPS)
    with pytest.raises(ValueError, match="dtype must be 'bfloat16' or 'float16'"):
        choose_settings(DEVICES["T4"], GPT2_SMALL, 16, 64, FLOPS, dtype="float32")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        choose_settings(DEVICES["T4"], GPT2_SMALL, 0, 64, FLOPS)
    with pytest.raises(
        ValueError, match="dtype must be None \\(float32\\), 'bfloat16' or 'float16', got 'bf16'"
    ):
        training_memory(GPT2_SMALL, 8, "bf16")


def test_cpu_settings():
    settings = choose_settings(
        None,
        Config(d_model=64, n_layers=2, n_heads=4, d_head=16, d_mlp=256, n_ctx=64, d_vocab=512),
        16,
        400,
        1e6,
    )
    assert settings.training_args() == dict(
        device="cpu", autocast=None, micro_batch_size=16, compile=False
    )
    assert settings.peak_flops is None and "float32" in settings.describe()
