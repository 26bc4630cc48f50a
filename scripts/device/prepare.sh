#!/usr/bin/env bash
# Builds .carry/ (git-ignored), the folder that travels with the prepared GPU call (README, "The GPU run"):
#   .carry/whl/        wheels of what the GPU machine lacks: hydra-core, omegaconf, antlr4 (built here)
#   .carry/raw/        the Beauty raw files (from ../shared/data/raw, or RAW=...)
#   .carry/processed/  the processed Beauty files and their offline-encoder (all-MiniLM-L6-v2) embeddings,
#                      computed here: the encoder package is too large to travel (a few minutes on 2 cores)
# Then: the device tool's run with carry [".carry"] and the command `bash scripts/device/run.sh $OUT`.
set -euo pipefail
cd "$(dirname "$0")/../.."
RAW=${RAW:-../shared/data/raw}
py=.venv/bin/python
[ -x "$py" ] || { echo "run 'make venv' first" >&2; exit 2; }
pin() { grep -E "^$1==" requirements.txt | cut -d= -f3; }

rm -rf .carry/whl && mkdir -p .carry/whl .carry/raw/amazon .carry/processed
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .carry/whl \
  "hydra-core==$(pin hydra-core)" "omegaconf==$(pin omegaconf)"
antlr=$($py -c "import importlib.metadata as m; print(m.version('antlr4-python3-runtime'))")
$py -m pip wheel -q --no-deps -w .carry/whl "antlr4-python3-runtime==$antlr"   # sdist only: built here

for f in reviews_Beauty_5.json.gz meta_Beauty.json.gz; do
  cp -p "$RAW/amazon/$f" .carry/raw/amazon/
done
# preprocessing and the embedding cache exactly as the device run asks for them
HF_HUB_OFFLINE=1 $py run.py dataset=amazon dataset.name=Beauty dataset.raw_data_path=.carry/raw \
  dataset.processed_data_path=.carry/processed dataset.content_model=all-MiniLM-L6-v2 \
  stop_after=embed logging.mode=disabled output_path=.carry/prepare_run
rm -rf .carry/prepare_run
ls -l .carry/whl
du -sh .carry
echo "carry size: $(du -sb .carry | cut -f1) bytes (limit 64 MiB = 67108864, with the working tree)"
