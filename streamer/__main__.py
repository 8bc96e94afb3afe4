"""`python -m streamer` entry point."""

from streamer.cli import main

raise SystemExit(main())
