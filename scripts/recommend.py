"""Ask a finished run for recommendations after a history of items.

    python scripts/recommend.py RUN_DIR ITEM_ID... [--k 10] [--by genret|dense|uni] [--internal]
                                [--exclude-history] [--user N] [--uni-k 20] [--device cpu|cuda] [--json]

ITEM_IDs are the dataset's own item ids (Amazon ASINs, Steam product ids, your data's ids), oldest
first; `--internal` takes the project's 1-based item ids instead. Run it from the folder the run was
started in (the run's paths are relative to it). Prints the ranked items with their scores and
texts (`--json`: one JSON list), and under them why there are fewer than --k, when so (with --json,
on stderr). See src/recommend.py.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.errors import ExpectedError, report  # noqa: E402
from src.recommend import default_retrieval, load_run, recommend_with_reasons  # noqa: E402

TEXT_WIDTH = 90  # characters of each item's text shown in the table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the run folder of a finished run")
    parser.add_argument("items", nargs="+", metavar="ITEM_ID", help="the history, oldest first")
    parser.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    parser.add_argument("--by", choices=("genret", "dense", "uni"), default=None,
                        help="retrieval (default: uni for LIGER, genret for TIGER, dense for dense-only runs)")
    parser.add_argument("--internal", action="store_true", help="ITEM_IDs are the project's 1-based item ids")
    parser.add_argument("--exclude-history", action="store_true",
                        help="leave the history's items out of the recommendations (their ranks stay empty; the "
                             "rows are refilled from further down the ranking)")
    parser.add_argument("--user", type=int, default=None,
                        help="user index (default 0), only for methods with user tokens (method.include_user_id)")
    parser.add_argument("--uni-k", type=int, default=None, help="generated candidates uni keeps (default 20)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: a GPU when there is one)")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    return parser.parse_args(argv)


def table(recommendations, by: str) -> str:
    """Aligned rows: rank, item id, score, cold-start mark, text."""
    width = max([len("item"), *(len(r.item_id) for r in recommendations)])
    score = "log-prob" if by == "genret" else "score"
    lines = [f"{'rank':>4}  {'item':<{width}}  {score:>9}  {'cold':<4}  text"]
    for r in recommendations:
        text = r.text if len(r.text) <= TEXT_WIDTH else r.text[:TEXT_WIDTH - 1] + "…"
        lines.append(f"{r.rank:>4}  {r.item_id:<{width}}  {r.score:>9.4f}  {'yes' if r.cold_start else '':<4}  {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the stages' progress, apart from the answer
            run = load_run(args.run_dir, args.device)
        by = args.by or default_retrieval(run)
        found = recommend_with_reasons(run, args.items, k=args.k, by=by, internal=args.internal, user=args.user,
                                       uni_k=args.uni_k, exclude_history=args.exclude_history)
    except ExpectedError as exc:  # the message says what to do; the traceback would only hide it
        return report(exc)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in found.items], indent=1))
        if found.note:
            print(f"note: {found.note}", file=sys.stderr)
    else:
        left_out = ", its items left out" if args.exclude_history else ""
        print(f"\nTop {args.k} by {by} after {len(args.items)} item(s){left_out}, from {args.run_dir}:\n"
              f"{table(found.items, by)}" + (f"\n({found.note})" if found.note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
