#!/usr/bin/env bash
# Download (where missing) and preprocess every published dataset, stopping before the embeddings.
# Extra Hydra overrides are appended to every run, e.g.
#   bash scripts/preprocess.sh dataset.raw_data_path=../shared/data/raw
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

for name in Beauty Toys_and_Games Sports_and_Outdoors; do
    "$PY" run.py dataset=amazon dataset.name="$name" stop_after=preprocess experiment_id=preprocess "$@"
done
"$PY" run.py dataset=steam stop_after=preprocess experiment_id=preprocess "$@"
