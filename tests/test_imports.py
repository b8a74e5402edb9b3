"""Imports flow one way: config at the bottom, cli on top; packages on one level do not import each other; and no
module imports, however indirectly, one that imports it back.

Every import form counts, wherever it stands (module level, inside a function, under `if TYPE_CHECKING`):
`import nmt.x`, `import nmt.x as y`, `from nmt.x import y`, `from nmt import x`, `from . import x`, `from .x import y`.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nmt"
LEVELS = [
    {"errors"},
    {"ranges"},
    {"config", "atomic"},
    {"vocab", "device", "metrics_log", "resumable"},
    {"data", "model", "plot"},
    {"search", "checkpoint", "terminology"},
    {"export", "pretrained"},
    {"engines", "logprob"},
    {"documents", "output_formats", "score", "report", "train"},
    {"translate", "tune"},
    {"serve"},
    {"cli"},
    {"__main__"},
]
NOT_MODULES = {"__version__"}  # names `from nmt import ...` takes that are not modules


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """nmt/engines/base.py -> nmt.engines.base; nmt/cli/__init__.py -> nmt.cli."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, package: Path = PACKAGE) -> set[str]:
    """Every nmt module `path` imports, in any form and anywhere in the file."""
    name = module_name(path, package)
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == package.name}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package this module is in (or is)
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin.split(".")[0] != package.name:
                continue
            found.add(origin)
            # `from nmt import cli` / `from nmt.search import beam`: the names may be modules themselves
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                if alias.name not in NOT_MODULES and _exists(candidate, package):
                    found.add(candidate)
    found.discard(package.name)  # `from nmt import __version__`
    found.discard(name)  # a package's __init__ naming its own modules (`from . import app`)
    return found


def _exists(module: str, package: Path) -> bool:
    relative = Path(*module.split(".")[1:])
    return (package / relative).with_suffix(".py").is_file() or (package / relative / "__init__.py").is_file()


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(path, package): imported_modules(path, package) for path in package.rglob("*.py")}


def level_of(module: str) -> int:
    top = module.split(".")[1]
    return next(i for i, names in enumerate(LEVELS) if top in names)


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of the graph as the modules along it ([] where there is none): depth-first search. A package's
    __init__ importing its own modules is no cycle unless one of them imports the package back."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return []


def test_every_module_has_a_level():
    unknown = sorted({module.split(".")[1] for module in import_graph() if "." in module} - set().union(*LEVELS))
    assert unknown == [], f"add these to a level of LEVELS: {unknown}"


def test_imports_only_point_down():
    problems = []
    for module, imports in import_graph().items():
        if module == "nmt":
            continue
        for imported in imports:
            same_package = imported.split(".")[1] == module.split(".")[1]
            if not same_package and level_of(imported) >= level_of(module):
                problems.append(f"{module} imports {imported}")
    assert problems == []


def test_no_import_cycle():
    assert find_cycle(import_graph()) == []


def test_the_walk_sees_every_import_form_and_a_cycle(tmp_path):
    """The checks above on a small package of every import form, with a cycle through a function-level import."""
    package = tmp_path / "nmt"
    (package / "serve").mkdir(parents=True)
    (package / "__init__.py").write_text("__version__ = '0'\n")
    (package / "config.py").write_text("import nmt.errors\n")
    (package / "errors.py").write_text("def late():\n    from nmt import config\n")  # errors -> config -> errors
    (package / "serve" / "__init__.py").write_text("from . import app\n")
    (package / "serve" / "app.py").write_text("from .service import Service\nimport nmt.cli.app as cli\n")
    (package / "serve" / "service.py").write_text("from nmt import __version__\nService = 1\n")
    graph = import_graph(package)
    assert graph["nmt.config"] == {"nmt.errors"}
    assert graph["nmt.errors"] == {"nmt.config"}
    assert graph["nmt.serve"] == {"nmt.serve.app"}
    assert graph["nmt.serve.app"] == {"nmt.serve.service", "nmt.cli.app"}
    assert graph["nmt.serve.service"] == set()
    assert find_cycle(graph) == ["nmt.config", "nmt.errors", "nmt.config"]
    (package / "errors.py").write_text("")
    assert find_cycle(import_graph(package)) == []


def test_the_command_line_starts_without_torch():
    """`nmt --help`, option checks and dry runs stay fast: importing the command line (every command module) loads
    neither torch nor the serving stack; a command imports what it needs when it runs."""
    import subprocess
    import sys

    probe = ("import sys, nmt.cli; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'starlette', 'numpy'}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent).stdout.strip()
    assert loaded == "[]"
