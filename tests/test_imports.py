"""Imports flow one way: config at the bottom, cli on top; modules on one level do not import each other."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nmt"
LEVELS = [
    {"errors"},
    {"config", "atomic"},
    {"vocab", "device", "metrics_log"},
    {"data", "model", "plot"},
    {"search", "checkpoint", "terminology"},
    {"train", "translate", "score", "report"},
    {"forced", "tune"},
    {"export", "pretrained"},
    {"engines"},
    {"serve"},
    {"cli"},
    {"__main__", "reference"},
]


def level_of(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, names in enumerate(LEVELS) if top in names)


def test_imports_only_point_down():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).with_suffix("")
        if relative.name == "__init__" and len(relative.parts) == 1:
            continue
        module = relative.parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nmt."):
                imported = node.module[len("nmt."):]
            elif isinstance(node, ast.ImportFrom) and node.module == "nmt":
                continue  # `from nmt import __version__`
            else:
                continue
            same_package = imported.split(".")[0] == module
            if not same_package and level_of(imported) >= level_of(module):
                problems.append(f"{path.relative_to(PACKAGE)} imports nmt.{imported}")
    assert problems == []
