"""Build the C extensions (streamer/core/_sketch.c, streamer/core/_units.c); everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("streamer.core._sketch", ["streamer/core/_sketch.c"],
                  extra_compile_args=["-O3", "-std=c11"]),
        Extension("streamer.core._units", ["streamer/core/_units.c"],
                  extra_compile_args=["-O3", "-std=c11"]),
    ],
)
