"""The compiled part of xmc (metadata lives in pyproject.toml): the dual CD solver of xmc.linear."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xmc._dcd",
            ["xmc/_dcd.c"],
            # No fused multiply-add: the same weights on every host, whatever the compiler targets.
            extra_compile_args=["-O3", "-ffp-contract=off"],
        )
    ]
)
