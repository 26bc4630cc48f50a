# Sourced by the experiment scripts: run from the repository root, and let `python` mean the
# project's interpreter (.venv when present; override with PYTHON=...). Extra arguments given to a
# script are appended to every run, e.g. `bash scripts/ours.sh dataset.TIGER.trainer.steps=1000`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
python() { "$PYTHON" "$@"; }
