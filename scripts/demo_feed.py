#!/usr/bin/env python3
"""Feed a corpus into a running `streamer run`, a few lines at a time, to watch words appear.

Appends the lines of CORPUS to INBOX_FILE at a steady rate (whole lines only, flushed
after every write), the way a log writer or a crawler would, so that a service tailing
the inbox sees a live feed:

    scripts/run &                                   # the service, tailing inbox/*.txt
    python scripts/demo_feed.py my-corpus.txt inbox/feed.txt --rate 200
    # open http://127.0.0.1:8377/ and watch the new words arrive

Options: --rate lines per second (default 100), --skip N lines first, --limit N lines
in all, --loop to start over at the end. Progress goes to stderr every few seconds;
Ctrl-C or SIGTERM stops cleanly (each write is whole lines in one system call, so the
file never ends in half a line). Standard library only.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

TICK = 0.1  # seconds between writes


def corpus_lines(path: Path, *, skip: int, loop: bool) -> Iterator[str]:
    """Non-empty lines of *path* (undecodable bytes replaced), forever if *loop*."""
    while True:
        n = 0
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            for line in itertools.islice(f, skip, None):
                line = line.rstrip("\r\n")
                if line.strip():
                    n += 1
                    yield line
        if not loop or n == 0:
            return
        skip = 0


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def positive(kind: type[float] | type[int]):
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError("must be greater than 0")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Append a corpus to an inbox file at a steady rate (a demo feed).")
    p.add_argument("corpus", type=Path, help="text file, one document or sentence a line")
    p.add_argument("inbox", type=Path, help="file to append to, e.g. inbox/feed.txt")
    p.add_argument("--rate", type=positive(float), default=100.0, metavar="LINES_PER_S",
                   help="lines per second (default 100)")
    p.add_argument("--skip", type=int, default=0, metavar="N",
                   help="skip the first N lines of the corpus")
    p.add_argument("--limit", type=positive(int), metavar="N", help="stop after N lines")
    p.add_argument("--loop", action="store_true", help="start over at the end of the corpus")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    if not args.corpus.is_file():
        p.error(f"corpus not found: {args.corpus}")
    args.inbox.parent.mkdir(parents=True, exist_ok=True)

    lines = corpus_lines(args.corpus, skip=max(0, args.skip), loop=args.loop)
    if args.limit:
        lines = itertools.islice(lines, args.limit)
    signal.signal(signal.SIGTERM, _interrupt)
    start = time.monotonic()
    sent = 0
    chars = 0
    last_report = start
    fd = os.open(args.inbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while True:
            # as many lines as the rate allows by now: no drift, whatever a write costs
            due = int((time.monotonic() - start) * args.rate) + 1 - sent
            chunk = list(itertools.islice(lines, max(0, due)))
            if due > 0 and not chunk:
                break
            if chunk:
                write_all(fd, "".join(line + "\n" for line in chunk).encode("utf-8"))
                sent += len(chunk)
                chars += sum(map(len, chunk))
            now = time.monotonic()
            if not args.quiet and now - last_report >= 5:
                last_report = now
                print(f"demo_feed: {sent:,} lines, {chars:,} chars in {now - start:.0f} s "
                      f"-> {args.inbox}", file=sys.stderr, flush=True)
            time.sleep(TICK)
    except KeyboardInterrupt:
        pass
    finally:
        os.close(fd)
    if not args.quiet:
        print(f"demo_feed: done, {sent:,} lines ({chars:,} chars) appended to {args.inbox}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
