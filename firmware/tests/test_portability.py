"""The device-side modules use only what MicroPython (ESP32 port) has.

The MicroPython run (``test_micropython.py``) is the proof for the pure core;
this static check also covers ``esp32.py``, which needs a board to run.
"""

import ast
import re
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parent.parent
CPYTHON_ONLY = {"transport_paho.py", "host.py"}
DEVICE_MODULES = sorted(path for path in FIRMWARE.glob("*.py") if path.name not in CPYTHON_ONLY)
ALLOWED_IMPORTS = {
    "json",
    "hashlib",
    "binascii",
    "time",
    "os",
    "struct",
    "sys",
    "machine",
    "network",
    "ntptime",
    "ssl",
    "umqtt.simple",
}
# Attributes of str/int that MicroPython's builtins lack (checked under
# MicroPython 1.27), plus Python features it does not have.
MISSING_METHODS = {"isalnum", "isascii", "zfill", "ljust", "rjust", "removeprefix", "removesuffix", "title"}
MISSING_METHODS |= {"casefold", "bit_length", "format_map", "expandtabs", "translate", "maketrans"}
FSTRING_SELF_DOC = re.compile(r"[^=!<>]=\s*[}!:]")


def test_every_device_module_is_checked():
    names = {path.name for path in DEVICE_MODULES}
    assert {"meter.py", "signing.py", "journal.py", "esp32.py", "decisions.py"} <= names


def problems_in(source):
    tree = ast.parse(source)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems += [alias.name for alias in node.names if alias.name not in ALLOWED_IMPORTS]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if not (module == "firmware" or module.startswith("firmware.") or module in ALLOWED_IMPORTS):
                problems.append(f"from {module}")
        elif isinstance(node, ast.Attribute) and node.attr in MISSING_METHODS:
            problems.append(f".{node.attr} (line {node.lineno})")
        elif isinstance(node, ast.keyword) and node.arg == "strict":
            problems.append(f"strict= (line {node.lineno})")
        elif isinstance(node, ast.AnnAssign | ast.Match | ast.AsyncFunctionDef):
            problems.append(f"{type(node).__name__} (line {node.lineno})")
        elif isinstance(node, ast.FunctionDef) and (
            node.returns or any(arg.annotation for arg in node.args.args + node.args.kwonlyargs)
        ):
            problems.append(f"annotations on {node.name}")
        elif isinstance(node, ast.Name) and node.id in ("dataclass", "typing", "Protocol"):
            problems.append(node.id)
        elif isinstance(node, ast.JoinedStr) and FSTRING_SELF_DOC.search(ast.get_source_segment(source, node) or ""):
            problems.append(f"f-string '=' specifier (line {node.lineno})")
    return problems


@pytest.mark.parametrize("path", DEVICE_MODULES, ids=lambda path: path.name)
def test_device_module_uses_only_micropython_features(path):
    assert problems_in(path.read_text(encoding="utf-8")) == []


def test_the_check_catches_what_micropython_lacks():
    bad = (
        "from __future__ import annotations\nimport typing\nfrom dataclasses import dataclass\n"
        "x: int = 1\ndef f(a: int) -> str:\n    return f'{a=}'\n"
        "'7'.zfill(3)\nlist(zip([1], [2], strict=True))\n"
    )
    assert len(problems_in(bad)) == 8
