"""`python -m streamer` entry point."""

from streamer.cli.main import main

raise SystemExit(main())
