#!/usr/bin/env bash
# LIGER (generative + dense retrieval) on the four published datasets, seed 42.
source "$(dirname "$0")/_common.sh"

for dataset_name in Beauty Toys_and_Games Sports_and_Outdoors; do
    python run.py dataset=amazon dataset.name=$dataset_name seed=42 device_id=0 method=setting test_method=liger experiment_id="liger_$dataset_name" "$@"
done

for dataset_name in steam; do
    python run.py dataset=steam dataset.name=$dataset_name seed=42 device_id=0 method=setting test_method=liger experiment_id="liger_$dataset_name" "$@"
done
