#!/usr/bin/env bash
# The prepared GPU call (README, "The GPU run"): smoke check, benchmark, Beauty reproduction.
#   bash scripts/device/run.sh OUT_DIR             on the GPU machine, with .carry/ from prepare.sh
#   bash scripts/device/run.sh --dry-run OUT_DIR   here, on the CPU, tiny sizes, the same steps
# Ends within 9 minutes of wall time whatever happens (the dry run within 10).
set -u
cd "$(dirname "$0")/../.."
dry=()
if [ "${1:-}" = "--dry-run" ]; then dry=(--dry-run); shift; fi
out=${1:?usage: bash scripts/device/run.sh [--dry-run] OUT_DIR [--skip smoke,benchmark] [--compile] [--budget S]}
shift
mkdir -p "$out"

# PYTHON=... picks the interpreter; else the GPU machine's python3, or .venv's for the dry run
py=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ ${#dry[@]} -gt 0 ] && [ -x .venv/bin/python ] && py=.venv/bin/python
if ! $py -c "import hydra, omegaconf" 2>/dev/null && compgen -G ".carry/whl/*.whl" >/dev/null; then
  # the packages the GPU machine lacks (hydra-core, omegaconf, antlr4), from prepare.sh
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .carry/whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
limit=540
[ ${#dry[@]} -gt 0 ] && limit=600
timeout -k 10 $limit $py scripts/device/device_run.py "${dry[@]}" "$out" "$@"
