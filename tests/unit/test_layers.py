"""The direction of every import between the packages, checked on the source (function-level imports
included), so that a lazy import cannot hide a wrong arrow:

- ``service`` never imports ``training``, ``distillrec`` or torch;
- the bundle contract ``service.bundle`` imports only the standard library, numpy, pydantic, faiss
  and itself;
- ``training`` reaches the service side only through ``service.bundle``, and never the command line;
- importing the command line (``distillrec --help``) loads none of torch, onnxruntime, faiss, FastAPI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STDLIB = sys.stdlib_module_names


def imports_of(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) for every import statement under ``package``."""
    found = []
    for path in sorted((REPO / package.replace(".", "/")).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(REPO)), node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((str(path.relative_to(REPO)), node.lineno, node.module))
    assert found, f"no imports found under {package}: wrong path?"
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def violations(package: str, allowed) -> list[str]:
    return [f"{file}:{line} imports {module}" for file, line, module in imports_of(package) if not allowed(module)]


def test_service_never_imports_training_cli_or_torch():
    assert violations("service", lambda m: top(m) not in {"training", "distillrec", "torch"}) == []


def test_bundle_contract_imports_only_numpy_pydantic_faiss_and_itself():
    def allowed(m: str) -> bool:
        return top(m) in STDLIB or top(m) in {"__future__", "numpy", "pydantic", "faiss"} or m == "service.bundle" or m.startswith("service.bundle.")

    assert violations("service.bundle", allowed) == []


def test_training_reaches_the_service_only_through_the_bundle_contract():
    def allowed(m: str) -> bool:
        if top(m) == "service":
            return m.startswith("service.bundle")
        return top(m) not in {"distillrec", "fastapi", "starlette", "uvicorn"}

    assert violations("training", allowed) == []


@pytest.mark.parametrize("heavy", ["torch", "onnxruntime", "faiss", "fastapi"])
def test_the_command_line_imports_the_heavy_side_lazily(heavy):
    code = f"import sys, distillrec.cli as c; c.build_parser(); print({heavy!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", f"`distillrec --help` imports {heavy}"
