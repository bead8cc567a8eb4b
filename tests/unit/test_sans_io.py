"""The protocol core, the call model, the IVR and the ACD stay sans-IO (STYLE §1): no event
loop, sockets or clock.

Every module under `softswitch/sip/`, `softswitch/call/` and `acd/` (and the pure modules of
`ivr/`) is parsed (not imported) and its AST searched
for imports of asyncio, socket, time or uvloop, in any form: `import x`, `import x.y as z`,
`from x import y`, `from x.y import z`, and `__import__("x")` / `importlib.import_module("x")`
with a literal name. Time reaches these packages only as a `now` parameter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("softswitch/sip", "softswitch/call", "acd")
#: Pure modules of packages that also hold I/O modules (prompt cache, voicemail store).
PURE_FILES = (
    "ivr/app.py", "ivr/nodes.py", "ivr/resolver.py", "ivr/numbers.py", "media/items.py",
    "softswitch/schedule.py",
)  # fmt: skip
FORBIDDEN = frozenset({"asyncio", "socket", "time", "uvloop"})


def modules() -> list[Path]:
    found = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return found + [ROOT / name for name in PURE_FILES]


def forbidden_imports(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """(line, module) for every forbidden import in `source`."""
    hits: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            first = node.args[0]
            if (
                called in ("__import__", "import_module")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names = [first.value]
        hits += [(node.lineno, n) for n in names if n.split(".")[0] in FORBIDDEN]
    return hits


def test_the_sans_io_packages_have_modules_to_check() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in modules()}
    assert "softswitch/sip/message.py" in found and "softswitch/sip/transaction.py" in found
    assert any(name.startswith("acd/") for name in found)


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_imports_no_asyncio_socket_time_or_uvloop(path: Path) -> None:
    hits = forbidden_imports(path.read_text(encoding="utf-8"), str(path))
    assert hits == [], f"{path.relative_to(ROOT)} imports {hits} (STYLE §1: sans-IO)"


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import asyncio.events as ev",
        "import os, socket",
        "from uvloop import Loop",
        "from time import monotonic",
        "def f():\n    import time\n",
        "__import__('socket')",
        "import importlib\nimportlib.import_module('asyncio')",
    ],
)
def test_checker_catches_every_import_form(source: str) -> None:
    assert forbidden_imports(source)


@pytest.mark.parametrize(
    "source",
    ["import timeit", "from .time import x", "import datetime", "from socketserver_x import y"],
)
def test_checker_allows_similar_names(source: str) -> None:
    assert forbidden_imports(source) == []
