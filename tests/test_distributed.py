"""The command line (python -m utils.train) and DistributedDataParallel under torchrun, on CPU
with gloo: 2 processes train with the losses of 1 (with and without gradient accumulation), a
run resumes 2 -> 1 and 1 -> 2 exactly, an interrupt on one rank stops every rank and saves once,
and a rank that crashes fails the run with its error instead of hanging it. Every run is bounded
in time (subprocess timeouts, and --timeout for the processes' collectives).

Tolerance: the ranks' gradients are averaged in another order than one process sums them, so the
losses agree to float32 rounding, not bit for bit: relative 1e-5 over 20 steps (measured: about
2e-7)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from utils.distributed import why_torchrun_failed
from utils.export import ROOT

TORCHRUN = Path(sys.executable).parent / "torchrun"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",  # the corpus falls back to what is on the machine, at once
    "OMP_NUM_THREADS": "1",  # two processes on two cores
    "PYTHONPATH": str(ROOT),
    "TUTORIAL_CONFIG": "ci",
}
STEPS = ["--config", "ci", "--eval-every", "10", "--checkpoint-every", "10", "--timeout", "60"]


def train(folder: Path, *options: str, processes: int = 1, module="utils.train", env=None):
    if processes == 1 and module == "utils.train":
        command = [sys.executable, "-m", module]
    else:
        command = [str(TORCHRUN), f"--nproc_per_node={processes}", "-m", module]
    done = subprocess.run(
        [*command, *STEPS, "--checkpoint-dir", str(folder), *options],
        cwd=folder.parent,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
    return done


def history(folder: Path, step: int) -> dict:
    [path] = folder.glob(f"run_*/step_{step:06d}.pt")
    return torch.load(path, weights_only=False)["history"]


def assert_same_losses(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b)
    worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
    assert worst < 1e-5, (worst, a, b)


def run_of(processes: int, tmp_path_factory, *options: str) -> Path:
    folder = tmp_path_factory.mktemp(f"p{processes}") / "checkpoints"
    done = train(folder, "--max-steps", "20", *options, processes=processes)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"on {processes} process" in done.stdout
    assert len(list(folder.glob("run_*"))) == 1  # rank 0 alone wrote
    return folder


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """20 steps on one process, saved at steps 10 and 20: what the other runs are compared with."""
    return run_of(1, tmp_path_factory)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    return run_of(2, tmp_path_factory)


def test_two_processes_train_with_the_losses_of_one(one_process, two_processes):
    for metric in ("train_loss", "val_loss"):
        assert_same_losses(history(two_processes, 20)[metric], history(one_process, 20)[metric])


def test_with_gradient_accumulation_too(one_process, tmp_path_factory):
    folder = run_of(2, tmp_path_factory, "--micro-batch-size", "4")  # 2 micro-batches per rank
    assert_same_losses(history(folder, 20)["train_loss"], history(one_process, 20)["train_loss"])


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_a_run_resumes_on_another_number_of_processes(
    one_process, two_processes, tmp_path, first, then
):
    [saved] = (two_processes if first == 2 else one_process).glob("run_*/step_000010.pt")
    folder = tmp_path / "checkpoints"
    done = train(folder, "--resume", str(saved), processes=then)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"trained to step 20 of 20 on {then} process" in done.stdout
    assert_same_losses(history(folder, 20)["train_loss"], history(one_process, 20)["train_loss"])


def test_sigterm_on_one_rank_stops_every_rank_and_rank_0_saves_once(tmp_path):
    folder = tmp_path / "checkpoints"
    planted = {"PLANT_RANK": "1", "PLANT_SIGTERM_AT": "6"}
    done = train(
        folder, "--max-steps", "20", processes=2, module="tests.distributed_driver", env=planted
    )
    assert done.returncode == 0, done.stderr[-2000:]
    saved = sorted(p.name for p in folder.glob("run_*/*.pt"))
    assert saved == ["step_000006.pt"], saved  # stopped before step 7 began: one save
    assert "trained to step 6 of 20" in done.stdout


def test_a_rank_that_crashes_fails_the_run_without_a_hang(tmp_path):
    folder = tmp_path / "checkpoints"
    planted = {"PLANT_RANK": "1", "PLANT_CRASH_AT": "3"}
    start = time.monotonic()
    done = train(
        folder, "--max-steps", "20", processes=2, module="tests.distributed_driver", env=planted
    )
    assert done.returncode != 0
    assert "planted crash on rank 1 at step 3" in done.stderr
    assert time.monotonic() - start < 120  # torchrun stops the other rank; no 60 s wait for it


def test_help_documents_every_option():
    done = subprocess.run(
        [sys.executable, "-m", "utils.train", "--help"], env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0
    for option in (
        "--config",
        "--max-steps",
        "--checkpoint-dir",
        "--resume",
        "--batch-size",
        "--micro-batch-size",
        "--lr",
        "--seed",
        "--eval-every",
        "--timeout",
    ):
        assert option in done.stdout


@pytest.mark.parametrize(
    "options, message",
    [
        (["--max-steps", "0"], "argument --max-steps: expected a positive whole number, got '0'"),
        (["--config", "huge"], "argument --config: invalid choice: 'huge'"),
        (["--lr", "nan"], "argument --lr: expected a positive number, got 'nan'"),
        (["--resume", "missing.pt"], "error: "),
    ],
)
def test_bad_options_get_one_line(tmp_path, options, message):
    done = subprocess.run(
        [sys.executable, "-m", "utils.train", "--checkpoint-dir", str(tmp_path), *options],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_gradient_accumulation_all_reduces_once_per_step(tmp_path):
    """DDP decides in the forward pass whether the backward after it all-reduces: every
    micro-batch but the last must run forward under no_sync(). Counted with a communication hook,
    in a one-process gloo group: 4 micro-batches per step all-reduce as often as 1."""
    import torch.distributed as dist

    from utils.distributed import DistributedTrainer
    from utils.fused import FusedTransformer
    from utils.model import Config
    from utils.training import TrainingArgs

    cfg = Config(d_model=16, n_heads=2, d_head=8, d_mlp=32, n_layers=1, n_ctx=8, d_vocab=32)
    sequences = torch.randint(0, 32, (64, 8), generator=torch.Generator().manual_seed(0))
    calls = []

    def counting(state, bucket):
        calls.append(bucket.index())
        done = torch.futures.Future()
        done.set_result(bucket.buffer())
        return done

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        counts = {}
        for micro in (None, 4):
            every = dict(eval_every=100, sample_every=100, checkpoint_every=100)
            args = TrainingArgs(
                batch_size=16,
                micro_batch_size=micro,
                max_steps=3,
                warmup_steps=1,
                checkpoint_dir=str(tmp_path / f"micro{micro}"),
                **every,
            )
            torch.manual_seed(0)
            trainer = DistributedTrainer(FusedTransformer(cfg), args, sequences, sequences[:16])
            trainer.ddp.register_comm_hook(None, counting)
            calls.clear()
            trainer.train()
            counts[micro] = len(calls)
    finally:
        dist.destroy_process_group()
    assert counts[4] == counts[None] > 0, counts


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path):
    done = train(tmp_path / "checkpoints", "--batch-size", "15", "--max-steps", "2", processes=2)
    assert done.returncode != 0
    said = "error: batch_size 15 does not split evenly over 2 processes: choose a multiple of 2 "
    assert said + "(14 or 16) or another number of processes" in done.stderr, done.stderr
    # what notebook 06 shows of it: that line, not the banner that ends torchrun's report
    assert said in why_torchrun_failed(done.stderr, done.returncode)


def test_a_share_that_does_not_split_into_micro_batches_is_refused(tmp_path):
    options = ["--batch-size", "24", "--micro-batch-size", "8", "--max-steps", "2"]
    done = train(tmp_path / "checkpoints", *options, processes=2)
    assert done.returncode != 0
    assert (
        "error: each of the 2 processes takes 12 rows of batch_size 24, which do not split into "
        "micro-batches of 8: choose a micro_batch_size that divides 12" in done.stderr
    ), done.stderr


TORCHRUN_REPORT = """
E1207 11:26:56.596000 23407 api.py:1002] failed (exitcode: -6) local_rank: 0 of binary: python
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
utils.distributed FAILED
------------------------------------------------------------
  exitcode  : -6 (pid: 23413)  (SIGABRT)
  traceback : Signal 6 (SIGABRT) received by PID 23413
============================================================
"""


@pytest.mark.parametrize(
    "ranks_said, expected",
    [
        (
            'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad rows\n',
            "ValueError: bad rows",
        ),
        (
            "terminate called without an active exception\n",
            "ended by SIGABRT (exit code -6): terminate called without an active exception",
        ),
        ("", "ended by SIGABRT (exit code -6), without an error message of their own"),
    ],
)
def test_why_torchrun_failed_finds_the_ranks_reason(ranks_said, expected):
    said = why_torchrun_failed(ranks_said + TORCHRUN_REPORT, 1)
    assert expected in said, said
    assert "=" * 10 not in said


def test_the_ddp_and_fsdp_comparison_exits_cleanly(tmp_path):
    """Notebook 06's FSDP run: it once aborted as it exited in 2 runs of 8 ("terminate called
    without an active exception"), the FSDP models still alive when the process group was
    destroyed; each of these runs must end with exit code 0."""
    for _ in range(4):
        done = subprocess.run(
            [str(TORCHRUN), "--nproc_per_node=2", "-m", "utils.distributed"],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, why_torchrun_failed(done.stderr, done.returncode)
        assert "FSDP: rank 0 of 2 stores 59,328 of the 118,656 parameters" in done.stdout


def _run_cli(tmp_path, *options):
    return subprocess.run(
        [sys.executable, "-m", "utils.train", "--config", "ci", *options],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_that_diverges_ends_in_one_line(tmp_path):
    done = _run_cli(tmp_path, "--max-steps", "30", "--lr", "1e4", "--checkpoint-dir", str(tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("python -m utils.train: error: the training loss became")
    )


def test_a_checkpoint_dir_that_takes_no_file_is_found_before_the_first_step(tmp_path):
    """/proc: a folder os.access calls writable for root, where no folder can be made."""
    unwritable = Path("/proc/no_checkpoints_here")
    if not (Path("/proc/self").exists() and os.access("/proc", os.W_OK)):
        pytest.skip("needs /proc, writable as os.access sees it")
    done = _run_cli(tmp_path, "--max-steps", "6", "--checkpoint-dir", str(unwritable))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "step 1" not in done.stdout, done.stderr[-2000:]
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"python -m utils.train: error: checkpoint_dir {unwritable} cannot be written to"
        )
    )
