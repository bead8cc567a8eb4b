"""C extensions of the media engine (STYLE §5); all other metadata lives in pyproject.toml.

`HOTLINE_SANITIZE=1 pip install -e .` builds them with AddressSanitizer and UBSan (run the
tests with `LD_PRELOAD=$(gcc -print-file-name=libasan.so)` then).
"""

import os
import subprocess
from pathlib import Path

from setuptools import Extension, setup

SRC = Path("media/src")
DSP = ["g711.c", "dtmf.c", "tone.c"]

compile_args = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
link_args: list[str] = []
if os.environ.get("HOTLINE_SANITIZE") == "1":
    sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    compile_args += sanitize
    link_args += sanitize


def pkg_config(package: str) -> tuple[list[str], list[str]]:
    """(compile flags, link flags) of a system library, from pkg-config, else the plain
    `-l` name (Debian's libsrtp2-dev ships a .pc file; scripts/test installs it)."""
    try:
        cflags = subprocess.run(
            ["pkg-config", "--cflags", package], check=True, capture_output=True, text=True
        ).stdout.split()
        libs = subprocess.run(
            ["pkg-config", "--libs", package], check=True, capture_output=True, text=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return [], [f"-l{package.removeprefix('lib')}"]
    return cflags, libs


def extension(
    name: str, module_source: str, extra: list[str], libraries: tuple[str, ...] = ()
) -> Extension | None:
    """An extension whose module file exists (media/src/<module_source>)."""
    if not (SRC / module_source).exists():
        return None
    sources = [module_source, *extra, *DSP]
    cflags: list[str] = []
    libs: list[str] = []
    for library in libraries:
        more_cflags, more_libs = pkg_config(library)
        cflags += more_cflags
        libs += more_libs
    return Extension(
        name,
        sources=[str(SRC / s) for s in dict.fromkeys(sources) if (SRC / s).exists()],
        include_dirs=[str(SRC)],
        extra_compile_args=compile_args + cflags,
        extra_link_args=link_args + libs,
    )


rtp_sources = sorted(p.name for p in SRC.glob("rtp_*.c"))
extensions = [
    ext
    for ext in (
        extension("media._dsp", "dsp_module.c", []),
        # SRTP (rtp_srtp.c) on libsrtp2
        extension("media._rtp", "rtp_module.c", rtp_sources, ("libsrtp2",)),
    )
    if ext is not None
]

setup(ext_modules=extensions)
