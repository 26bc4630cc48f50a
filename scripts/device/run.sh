#!/usr/bin/env bash
# One GPU call of the reproduction (docs/gpu.md): the next missing piece of docs/reproduction/.
#   bash scripts/device/run.sh OUT_DIR             on the GPU machine, with .bundle/ from bundle.sh
#   bash scripts/device/run.sh --dry-run OUT_DIR   on a CPU, a generated dataset at tiny sizes, the same steps
# Further options go to scripts/device/device_run.py (--help). Ends within 9 minutes of wall time whatever
# happens (the dry run within 5).
set -u
cd "$(dirname "$0")/../.."
dry=()
if [ "${1:-}" = "--dry-run" ]; then dry=(--dry-run); shift; fi
out=${1:?usage: bash scripts/device/run.sh [--dry-run] OUT_DIR [device_run.py options]}
shift
mkdir -p "$out"

# PYTHON=... picks the interpreter; else the GPU machine's python3, or .venv's for the dry run
py=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ ${#dry[@]} -gt 0 ] && [ -x .venv/bin/python ] && py=.venv/bin/python
if ! $py -c "import hydra, omegaconf" 2>/dev/null && compgen -G ".bundle/whl/*.whl" >/dev/null; then
  # the packages a bare GPU machine lacks (hydra-core, omegaconf, antlr4), from bundle.sh
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .bundle/whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
limit=540
[ ${#dry[@]} -gt 0 ] && limit=300
timeout -k 10 $limit $py scripts/device/device_run.py "${dry[@]}" "$out" "$@"
