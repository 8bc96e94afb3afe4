"""Files streamer writes and reads back: exports and snapshots, always written atomically.

Storage knows dicts of arrays and published words, not the engine's internals.
"""
