"""streamer: incremental new-word discovery over live text streams."""

__version__ = "0.1.0"
