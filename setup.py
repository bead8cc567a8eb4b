"""C extensions of the media engine (STYLE §5); all other metadata lives in pyproject.toml.

`HOTLINE_SANITIZE=1 pip install -e .` builds them with AddressSanitizer and UBSan (run the
tests with `LD_PRELOAD=$(gcc -print-file-name=libasan.so)` then).
"""

import os
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


def extension(name: str, module_source: str, extra: list[str]) -> Extension | None:
    """An extension whose module file exists (media/src/<module_source>)."""
    if not (SRC / module_source).exists():
        return None
    sources = [module_source, *extra, *DSP]
    return Extension(
        name,
        sources=[str(SRC / s) for s in dict.fromkeys(sources) if (SRC / s).exists()],
        include_dirs=[str(SRC)],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )


rtp_sources = sorted(p.name for p in SRC.glob("rtp_*.c"))
extensions = [
    ext
    for ext in (
        extension("media._dsp", "dsp_module.c", []),
        extension("media._rtp", "rtp_module.c", rtp_sources),
    )
    if ext is not None
]

setup(ext_modules=extensions)
