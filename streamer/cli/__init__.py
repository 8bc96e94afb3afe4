"""The `streamer` command: one module per subcommand (run, discover, snapshot, top)."""
