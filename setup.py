"""Build the C extensions (streamer/_sketch.c, streamer/_units.c); everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("streamer._sketch", ["streamer/_sketch.c"],
                  extra_compile_args=["-O3", "-std=c11"]),
        Extension("streamer._units", ["streamer/_units.c"],
                  extra_compile_args=["-O3", "-std=c11"]),
    ],
)
