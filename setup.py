"""Build hook for the native fast path; the project metadata is in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mmuemu.emu._fastpath",
            ["mmuemu/emu/_native/fastpath.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
        )
    ]
)
