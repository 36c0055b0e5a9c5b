"""The house has one direction and no module uses another module's private names (DESIGN §17).

The import layers and independence are import-linter contracts (pyproject); this file checks what
import-linter cannot: that a name beginning with ``_`` is used only in the module that defines it.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "corral"


def _defined_in(tree: ast.AST) -> set[str]:
    """Every name a module defines or assigns (functions, classes, attributes set on any object, slots)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute):
                    names.add(part.attr)
                elif isinstance(part, ast.Name):
                    names.add(part.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_"):
            names.add(node.value)  # __slots__ entries, getattr names
    return names


#: The standard library's documented names that start with an underscore (``os._exit``: end a process
#: without its teardown, as the hook does once its answer is out).
STDLIB_PUBLIC = frozenset({("os", "_exit")})


def private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    own = _defined_in(tree)
    where = path.relative_to(SRC.parent) if path.is_relative_to(SRC.parent) else path.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("corral"):
            found += [f"{where}:{node.lineno}: imports {a.name} from {node.module}"
                      for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            if isinstance(owner, ast.Name) and (owner.id, node.attr) in STDLIB_PUBLIC:
                continue
            if node.attr not in own:
                found.append(f"{where}:{node.lineno}: uses .{node.attr}, defined elsewhere")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    problems = [p for path in sorted(SRC.rglob("*.py")) for p in private_uses(path)]
    assert problems == [], "\n".join(problems)


def test_the_check_finds_a_private_name_used_across_modules(tmp_path: Path) -> None:
    bad = tmp_path / "probe.py"
    bad.write_text("from corral.governance.pipeline import _private\n\ndef f(gov):\n    return gov._prepare()\n",
                   encoding="utf-8")
    found = private_uses(bad)
    assert len(found) == 2 and "imports _private" in found[0] and "._prepare" in found[1]


# -- the import contracts (pyproject.toml, [tool.importlinter]) -------------------------------------------

ROOT = SRC.parents[1]


def lint_imports(source_root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts over the ``corral`` package found under ``source_root``."""
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    command = [str(Path(sys.executable).with_name("lint-imports")), "--config", str(ROOT / "pyproject.toml"),
               "--no-cache"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_house_keeps_its_import_contracts() -> None:
    result = lint_imports(SRC.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("where", "line", "contract"), [
    # the store importing the kernel: an arrow back up
    ("store/urls.py", "from corral.governance.budget import parse_budget", "One direction"),
    # a circle inside one layer, hidden in a function as the old ones were
    ("governance/plans.py", "def _later():\n    from corral.governance.transactions import Transaction",
     "No circles"),
    # one provider borrowing another's code
    ("harness/models/gemini.py", "from corral.harness.models.openai import OpenAIModel", "know nothing"),
])
def test_a_new_upward_import_or_circle_breaks_a_contract(tmp_path: Path, where: str, line: str,
                                                         contract: str) -> None:
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy / "corral", ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "corral" / where
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + line + "\n", encoding="utf-8")
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [block for block in result.stdout.split("\n\n") if "BROKEN" in block]
    assert any(contract in block for block in broken), result.stdout
