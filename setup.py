"""Build the one C extension (streamer/_sketch.c); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("streamer._sketch", ["streamer/_sketch.c"],
                  extra_compile_args=["-O3", "-std=c11"]),
    ],
)
