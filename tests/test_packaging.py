"""Each package declares exactly what it imports, and depends only downward (DESIGN.md).

core <- data <- teachers <- students <- eval <- vae <- cli
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
ORDER = {"core": 0, "data": 1, "teachers": 2, "students": 3, "eval": 4, "vae": 5, "cli": 6}
STDLIB = set(sys.stdlib_module_names)


def _requirements(pkg: str) -> set[str]:
    meta = tomllib.loads((ROOT / "packages" / f"mmthesis-{pkg}" / "pyproject.toml").read_text())
    names = set()
    optional = [d for group in meta["project"].get("optional-dependencies", {}).values() for d in group]
    for dep in meta["project"]["dependencies"] + optional:
        names.add(re.split(r"[ <>=@\[;]", dep, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def _imports(pkg: str) -> set[str]:
    found = set()
    for path in (ROOT / "packages" / f"mmthesis-{pkg}" / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def _distribution(module: str) -> str | None:
    top = module.split(".")[0]
    if top == "mmthesis":
        return "mmthesis-" + module.split(".")[1]
    if top in STDLIB or top == "__future__":
        return None
    dists = importlib.metadata.packages_distributions().get(top)
    return dists[0].lower().replace("_", "-") if dists else top


@pytest.mark.parametrize("pkg", list(ORDER))
def test_declared_dependencies_cover_imports_and_point_downward(pkg):
    declared = _requirements(pkg)
    used = {d for m in _imports(pkg) if (d := _distribution(m)) is not None} - {f"mmthesis-{pkg}"}
    # optional integrations (imported lazily, guarded by ImportError) count when declared as extras
    missing = used - declared
    assert not missing, f"mmthesis-{pkg} imports {sorted(missing)} without declaring them"
    for dep in declared:
        if dep.startswith("mmthesis-"):
            assert ORDER[dep.removeprefix("mmthesis-")] < ORDER[pkg], f"mmthesis-{pkg} must not depend on {dep}"


def test_no_namespace_init():
    for pkg in ORDER:
        assert not (ROOT / "packages" / f"mmthesis-{pkg}" / "src" / "mmthesis" / "__init__.py").exists()
