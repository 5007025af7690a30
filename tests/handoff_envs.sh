#!/usr/bin/env bash
# The hand-offs of notebook 05 against the packages learners install today, in environments of
# their own (git-ignored, in .handoff-envs/): TransformerLens 3.9.0 (HookedTransformer), the newest
# TransformerLens (4.x, TransformerBridge) and the newest nnsight, each with this project's
# requirements and the same CPU torch. CI does not install them: the tests skip without them.
#   bash tests/handoff_envs.sh            build what is missing, then run the hand-off tests in each
#   bash tests/handoff_envs.sh --rebuild  build every environment anew
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ENVS="$ROOT/.handoff-envs"
TORCH="${OFFLINE_CPU_TORCH:-torch==2.13.0}"  # the Makefile's CPU build, from the local wheel cache
TESTS=(tests/test_transformer_lens.py tests/test_transformer_bridge.py tests/test_nnsight.py)
declare -A PACKAGE=([tl3]="transformer-lens==3.9.0" [tl4]="transformer-lens>=4" [nnsight]="nnsight")
[[ "${1:-}" == "--rebuild" ]] && rm -rf "$ENVS"
mkdir -p "$ENVS"
echo "$TORCH" > "$ENVS/constraints.txt"  # nothing may replace that torch with a CUDA build
failed=()
for name in tl3 tl4 nnsight; do
  env="$ENVS/$name"
  if [[ ! -x "$env/bin/python" ]]; then
    echo "== building $name: ${PACKAGE[$name]}"
    python3 -m venv "$env"
    "$env/bin/pip" install -q "$TORCH"
    "$env/bin/pip" install -q -c "$ENVS/constraints.txt" -r requirements.txt "${PACKAGE[$name]}"
  fi
  echo "== $name: running the hand-off tests"
  if ! HF_HUB_OFFLINE=1 PYTHONPATH="$ROOT" "$env/bin/python" -m pytest -q -p no:cacheprovider \
      "${TESTS[@]}"; then
    failed+=("$name")
  fi
done
for name in tl3 tl4 nnsight; do
  "$ENVS/$name/bin/python" - "$name" <<'PY'
import importlib.metadata as md, sys
names = ("torch", "transformers", "transformer-lens", "nnsight")
versions = []
for n in names:
    try:
        versions.append(f"{n} {md.version(n)}")
    except md.PackageNotFoundError:
        pass
print(f"{sys.argv[1]}: " + ", ".join(versions))
PY
done
if (( ${#failed[@]} )); then
  echo "the hand-off tests failed in: ${failed[*]}"
  exit 1
fi
echo "the hand-off tests passed in every environment"
