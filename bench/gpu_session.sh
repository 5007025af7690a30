#!/usr/bin/env bash
# Everything to measure on a lent GPU, as one script (device time is short): the training-step bench at GPT-2 small shape,
# eager and compiled, then notebook 03 under the `gpu` config. Results go to $OUT (default /tmp/gpu_session).
#   pip install -r requirements.txt   # once, on the GPU machine (it has CUDA torch already, or installs it)
#   bash bench/gpu_session.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_session}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
"$PYTHON" bench/bench_train_step.py --device cuda --bf16 --shapes gpt2 --batch 16 --seq 1024 | tee "$OUT/bench_eager.txt"
"$PYTHON" bench/bench_train_step.py --device cuda --bf16 --compile --shapes gpt2 --batch 16 --seq 1024 | tee "$OUT/bench_compiled.txt"
TUTORIAL_CONFIG=gpu HF_HUB_OFFLINE=1 "$PYTHON" -m jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1200 \
  notebooks/03_training.ipynb --output-dir "$OUT" 2>&1 | tail -3
"$PYTHON" - "$OUT/03_training.ipynb" <<'PY' | tee "$OUT/notebook_03.txt"
import json, sys
for cell in json.load(open(sys.argv[1]))["cells"]:
    for output in cell.get("outputs", []):
        text = "".join(output.get("text", ""))
        if any(key in text for key in ("validation", "baseline", "MFU", "model:", "steps (")):
            print(text[-1500:])
PY
