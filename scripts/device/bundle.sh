#!/usr/bin/env bash
# Builds .bundle/ (git-ignored) on a machine with network, for a GPU machine without one (docs/gpu.md):
#   .bundle/whl/        wheels of what a bare GPU machine with torch lacks: hydra-core, omegaconf, antlr4
#   .bundle/raw/        the Beauty raw files (from RAW=..., the folder holding amazon/; default: the config's raw_data_path)
#   .bundle/processed/  the processed Beauty files and their all-MiniLM-L6-v2 embeddings, computed here (the
#                       encoder package is large; a few minutes on 2 cores)
#   .bundle/commit.txt  the commit the bundle was made from (the GPU machine's copy has no git history)
# Copy the repository with .bundle/ to the GPU machine, then: bash scripts/device/run.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
RAW=${RAW:-ID_generation/preprocessing/raw_data}
py=.venv/bin/python
[ -x "$py" ] || { echo "run 'make venv' first" >&2; exit 2; }
[ -f "$RAW/amazon/reviews_Beauty_5.json.gz" ] || {
  echo "$RAW/amazon/reviews_Beauty_5.json.gz not found: set RAW to the folder holding amazon/ (README, Data)" >&2; exit 2; }
pin() { grep -E "^$1==" requirements.txt | cut -d= -f3; }

rm -rf .bundle/whl && mkdir -p .bundle/whl .bundle/raw/amazon .bundle/processed
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .bundle/whl \
  "hydra-core==$(pin hydra-core)" "omegaconf==$(pin omegaconf)"
antlr=$($py -c "import importlib.metadata as m; print(m.version('antlr4-python3-runtime'))")
$py -m pip wheel -q --no-deps -w .bundle/whl "antlr4-python3-runtime==$antlr"   # sdist only: built here

for f in reviews_Beauty_5.json.gz meta_Beauty.json.gz; do
  cp -p "$RAW/amazon/$f" .bundle/raw/amazon/
done
# preprocessing and the embedding cache exactly as the GPU call asks for them
HF_HUB_OFFLINE=1 $py run.py dataset=amazon dataset.name=Beauty dataset.raw_data_path=.bundle/raw \
  dataset.processed_data_path=.bundle/processed dataset.content_model=all-MiniLM-L6-v2 \
  stop_after=embed logging.mode=disabled output_path=.bundle/prepare_run
rm -rf .bundle/prepare_run
echo "$(git rev-parse HEAD)$(git status --porcelain --untracked-files=no | grep -q . && echo ' with uncommitted changes')" \
  > .bundle/commit.txt
ls -l .bundle/whl
du -sh .bundle
echo "bundle: $(du -sb .bundle | cut -f1) bytes"
