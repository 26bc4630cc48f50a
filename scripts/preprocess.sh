#!/usr/bin/env bash
# Download (where missing) and preprocess every published dataset, stopping before the embeddings.
#   bash scripts/preprocess.sh dataset.raw_data_path=RAW_DIR
source "$(dirname "$0")/_common.sh"

for dataset_name in Beauty Toys_and_Games Sports_and_Outdoors; do
    python run.py dataset=amazon dataset.name=$dataset_name stop_after=preprocess experiment_id=preprocess "$@"
done
python run.py dataset=steam stop_after=preprocess experiment_id=preprocess "$@"
