"""Bytes to lines: the batch reader of `discover` and the tailing sources of the service.

This layer knows files, descriptors and positions, never the engine: it does not import
streamer.core.
"""
