"""Shared set-up for the suite.

tests/unit       in-process, milliseconds: the engine's pieces
tests/component  one module against real files, sockets or a child process
tests/e2e        `python -m streamer` as a subprocess, as a user runs it (and chromium)

pytest puts this directory on sys.path (rootdir conftest, no __init__.py), so every test
imports the shared helpers as ``helpers`` and ``demo_view``.
"""
