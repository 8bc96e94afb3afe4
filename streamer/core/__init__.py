"""The engine: pure, synchronous code from lines of text to a ranked list of words.

Nothing here does I/O, threads or asyncio; it imports nothing from the other layers.
"""
