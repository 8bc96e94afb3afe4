"""The long-running service: configuration, the daemon that wires sources, engine, timers and
outputs, and the HTTP API with its dashboard."""
