"""The paper's table (mean ± std over seeds) from run folders, the hybrid's K sweep, and figures.

    .venv/bin/python scripts/results.py results/                       # every run below results/, Markdown
    .venv/bin/python scripts/results.py results/multirun/ablation --paper --sweep
    .venv/bin/python scripts/results.py results/ --format csv > table.csv  # notes and unfinished runs: stderr
    .venv/bin/python scripts/results.py results/ --format latex --k 10
    .venv/bin/python scripts/results.py results/ --plots figures/      # also write PNGs, print their paths

FOLDER: run folders or folders holding them, searched recursively (a run folder holds
.hydra/config.yaml). Rows: TIGER, TIGER (T), Dense (ID), Dense (SID), LIGER, then others, each split
by the settings that differ between its runs on a dataset; columns per dataset: in-set and
cold-start Recall@k and NDCG@k. Runs without test metrics are listed under the table, never
averaged. CSV: one line per cell (view, source, dataset, row, retrieval, group, measure, k, K, mean,
std, n, seeds), see src/results.py. --paper appends the published rows of docs/published_results.csv.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.errors import ExpectedError, report  # noqa: E402
from src.results import FORMATS, find_runs, format_report  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("folders", nargs="+", metavar="FOLDER", type=Path,
                        help="run folders, sweep roots or results/, searched recursively")
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="output format (default: markdown)")
    parser.add_argument("--paper", action="store_true", help="append published rows (docs/published_results.csv)")
    parser.add_argument("--k", type=int, default=10, help="metric cut-off: Recall@k, NDCG@k (default: 10)")
    parser.add_argument("--sweep", action="store_true", help="also the hybrid (uni) by K view")
    parser.add_argument("--plots", type=Path, metavar="OUT_DIR", help="write PNG figures into OUT_DIR")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k must be a positive cut-off, not {args.k}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = find_runs(args.folders)
        output, remarks = format_report(runs, args.format, args.k, args.paper, args.sweep)
        print(output, end="")
        if remarks:
            print(remarks, file=sys.stderr)
        if args.plots is not None:
            from src.plots import write_plots  # matplotlib only when figures are asked for

            paths, skipped = write_plots(runs, args.plots, args.k)
            # with CSV, stdout stays the CSV alone
            stream = sys.stderr if args.format == "csv" else sys.stdout
            comment = "% " if args.format == "latex" else ""
            print(f"\n{comment}Figures:", *(f"{comment}  {path}" for path in paths), sep="\n", file=stream)
            if skipped:
                print(f"{comment}Left out of the curve figures:", *(f"{comment}  {line}" for line in skipped),
                      sep="\n", file=stream)
    except ExpectedError as exc:  # the message says what to do; the traceback would only hide it
        return report(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
