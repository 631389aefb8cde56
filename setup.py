"""Build hook for the native fast path and exact mode; the project metadata is in pyproject.toml."""
from setuptools import Extension, setup

_CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra"]

setup(
    ext_modules=[
        Extension(
            "mmuemu.emu._fastpath",
            ["mmuemu/emu/_native/fastpath.c", "mmuemu/emu/_native/sigint_watch.c"],
            depends=["mmuemu/emu/_native/pte_bits.h", "mmuemu/emu/_native/softtlb.h"],
            extra_compile_args=_CFLAGS,
        ),
        Extension(
            "mmuemu.emu._tracerec",
            ["mmuemu/emu/_native/tracerec.c"],
            extra_compile_args=_CFLAGS,
        ),
        Extension(
            "mmuemu.emu._exact",
            ["mmuemu/emu/_native/exact.c"],
            depends=["mmuemu/emu/_native/pte_bits.h", "mmuemu/emu/_native/softtlb.h"],
            extra_compile_args=_CFLAGS,
        ),
    ],
    package_data={"mmuemu.hw": ["profiles/*.toml"]},
)
