"""CLI: ``python -m datasets.jetbot_synth --out DIR`` writes (or reuses) a jetbot_synth dataset."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datasets.jetbot_synth",
        description="Render the jetbot_synth world: unpaired real/ and sim/ training frames and "
        "paired val/ and test/ splits with expert actions. An existing complete dataset with "
        "the same parameters is reused.",
    )
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--size", type=int, default=128, help="square image size in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-real", type=int, default=2000, help="unpaired real training frames")
    p.add_argument("--n-sim", type=int, default=2000, help="unpaired sim training frames")
    p.add_argument("--n-val", type=int, default=200, help="paired validation states")
    p.add_argument("--n-test", type=int, default=500, help="paired test states")
    p.add_argument("--contact-sheet", action=argparse.BooleanOptionalAction, default=True,
                   help="write contact_sheet.png (sim | real | corrected real)")
    p.add_argument("--force", action="store_true",
                   help="regenerate even if a matching dataset exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI. Returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.size < 8:
        print(f"error: --size must be at least 8, got {args.size}", file=sys.stderr)
        return 2
    for key in ("n_real", "n_sim", "n_val", "n_test"):
        if getattr(args, key) < 0:
            print(f"error: --{key.replace('_', '-')} must be >= 0 ({key}), got "
                  f"{getattr(args, key)}", file=sys.stderr)
            return 2
    # Imported after the arguments are checked: torch takes seconds to import.
    from datasets.jetbot_synth.generate import DatasetExistsError, ensure_dataset, generate_dataset

    kw = dict(size=args.size, seed=args.seed, n_real=args.n_real, n_sim=args.n_sim,
              n_val=args.n_val, n_test=args.n_test)
    t0 = time.perf_counter()
    try:
        if args.force:
            root = generate_dataset(args.out, progress=not args.no_progress,
                                    contact_sheet=args.contact_sheet, **kw)
        else:
            root = ensure_dataset(args.out, progress=not args.no_progress,
                                  contact_sheet=args.contact_sheet, **kw)
    except DatasetExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n = args.n_real + args.n_sim + 2 * (args.n_val + args.n_test)
    print(f"jetbot_synth dataset ready at {root} ({n} frames, {args.size}px, "
          f"{time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
