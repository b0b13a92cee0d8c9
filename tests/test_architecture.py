"""Gates on the shape of the code: no import cycle, no library file over 400 lines, a pure-torch model.

The import graph is read from the source with `ast` (nothing is imported), so a cycle is caught even when it
only closes inside a function body. Imports under `if TYPE_CHECKING:` never run and are left out of the cycle
check; the layering check of `tdn/model/` counts them too, since a type-only import is still a dependency.

Each checker is a plain function over a root folder, so the tests at the bottom run it on a small synthetic
package in `tmp_path` and show that it fails when it should.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("pipeline", "tdn", "jobs")
LIBRARY_PACKAGES = ("pipeline", "tdn")
MAX_LIBRARY_LINES = 400
# tdn/model/ is the network alone (torch only): it must not reach up into the stages that use it.
MODEL_FORBIDDEN = (
    "tdn.checkpoints",
    "tdn.training",
    "tdn.evaluation",
    "tdn.tracking",
    "tdn.reporting",
    "pipeline",
    "jobs",
    "ray",
    "mlflow",
)


@dataclass(frozen=True)
class Import:
    """One import statement of a project module, resolved to the module it loads."""

    source: str  # importing module, e.g. "tdn.model.networks"
    target: str  # imported module, dotted; a project module when it resolves to one
    file: str  # file of the importing module, relative to the root
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def project_modules(root: Path, packages: Sequence[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the given top-level packages."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of `name` that is a project module, else `name` itself (third-party)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return name


def _imports_of(module: str, root: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import in the module's file (module level and inside functions), resolved to modules."""
    path = modules[module]
    file = str(path.relative_to(root))
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str, node: ast.stmt, type_only: bool) -> None:
        found.append(Import(module, _resolve(target, modules), file, node.lineno, type_only))

    def visit(nodes: Iterable[ast.AST], type_only: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.body, True)
                visit(node.orelse, type_only)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node, type_only)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    # `from pkg import name` loads pkg.name when name is a submodule, else pkg itself.
                    submodule = f"{base}.{alias.name}"
                    add(submodule if submodule in modules else base, node, type_only)
            visit(ast.iter_child_nodes(node), type_only)

    visit(tree.body, False)
    return found


def import_graph(root: Path, packages: Sequence[str]) -> list[Import]:
    """All imports of all project modules under `root`."""
    modules = project_modules(root, packages)
    return [imp for module in modules for imp in _imports_of(module, root, modules)]


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of a directed graph, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return components


def import_cycles(root: Path, packages: Sequence[str]) -> list[str]:
    """One message per cycle (strongly connected component), listing the imports that close it."""
    modules = project_modules(root, packages)
    runtime = [imp for imp in import_graph(root, packages) if not imp.type_only and imp.target in modules]
    edges: dict[str, set[str]] = {module: set() for module in modules}
    for imp in runtime:
        edges[imp.source].add(imp.target)
    messages = []
    for component in strongly_connected(edges):
        members = set(component)
        if len(component) == 1 and component[0] not in edges[component[0]]:
            continue
        closing = sorted(
            {
                f"{imp.source} -> {imp.target} ({imp.where()})"
                for imp in runtime
                if imp.source in members and imp.target in members
            }
        )
        messages.append(f"cycle among {', '.join(component)}:\n    " + "\n    ".join(closing))
    return messages


def long_files(root: Path, packages: Sequence[str], limit: int) -> list[str]:
    """'path: N lines' for every .py file under the packages with more than `limit` lines."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                found.append(f"{path.relative_to(root)}: {lines} lines")
    return found


def forbidden_imports(
    root: Path, packages: Sequence[str], inside: str, forbidden: Sequence[str]
) -> list[str]:
    """Imports made by modules under `inside` whose target is, or lies under, one of `forbidden`."""
    found = []
    for imp in import_graph(root, packages):
        if imp.source != inside and not imp.source.startswith(inside + "."):
            continue
        if any(imp.target == f or imp.target.startswith(f + ".") for f in forbidden):
            found.append(f"{imp.where()}: {imp.source} imports {imp.target}")
    return found


# --- gates on this project ----------------------------------------------------------------------------------


def test_no_import_cycle() -> None:
    cycles = import_cycles(ROOT, PROJECT_PACKAGES)
    assert not cycles, "import cycles inside the project:\n" + "\n".join(cycles)


def test_no_library_file_over_the_line_limit() -> None:
    too_long = long_files(ROOT, LIBRARY_PACKAGES, MAX_LIBRARY_LINES)
    assert not too_long, f"library files over {MAX_LIBRARY_LINES} lines:\n" + "\n".join(too_long)


def test_model_package_is_pure_torch() -> None:
    found = forbidden_imports(ROOT, PROJECT_PACKAGES, "tdn.model", MODEL_FORBIDDEN)
    assert not found, "tdn/model/ reaches outside the network:\n" + "\n".join(found)


def test_graph_sees_the_whole_project() -> None:
    """The gates above are empty only because they found nothing, not because they read nothing."""
    modules = project_modules(ROOT, PROJECT_PACKAGES)
    assert {"pipeline.storage", "tdn.model.networks", "jobs.train"} <= set(modules)
    targets = {imp.target for imp in import_graph(ROOT, PROJECT_PACKAGES) if imp.source == "jobs.train"}
    assert targets & set(modules), targets


# --- the checkers fail when they should (synthetic package in tmp_path) -------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_cycle_finder_on_a_synthetic_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            # a -> b at module level, b -> a inside a function: a cycle.
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "def f():\n    from pkg import a\n    return a\n",
            # c -> d -> e -> c through `from pkg.sub import name` (name a module) and a relative import.
            "pkg/c.py": "from pkg.sub import d\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/d.py": "from .e import VALUE\n",
            "pkg/sub/e.py": "from ..c import *\nVALUE = 1\n",
            # f <-> g only through TYPE_CHECKING on one side: not a cycle.
            "pkg/f.py": "import pkg.g\n",
            "pkg/g.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.f\nelse:\n    import os\n"
            ),
            # h imports a name (not a module) from the package: an edge to pkg itself, no cycle.
            "pkg/h.py": "from pkg import something\n",
        },
    )
    cycles = import_cycles(tmp_path, ["pkg"])
    assert len(cycles) == 2, cycles
    assert cycles[0].startswith("cycle among pkg.a, pkg.b:"), cycles
    assert "pkg.b -> pkg.a (pkg/b.py:2)" in cycles[0]
    assert cycles[1].startswith("cycle among pkg.c, pkg.sub.d, pkg.sub.e:"), cycles
    assert "pkg.sub.e -> pkg.c (pkg/sub/e.py:1)" in cycles[1]
    graph = import_graph(tmp_path, ["pkg"])
    assert any(i.source == "pkg.h" and i.target == "pkg" for i in graph)
    assert any(i.source == "pkg.g" and i.target == "pkg.f" and i.type_only for i in graph)
    assert any(i.source == "pkg.g" and i.target == "os" and not i.type_only for i in graph)


def test_self_import_is_a_cycle(tmp_path: Path) -> None:
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "def f():\n    import pkg.a\n"})
    assert import_cycles(tmp_path, ["pkg"]) == ["cycle among pkg.a:\n    pkg.a -> pkg.a (pkg/a.py:2)"]


def test_line_limit_on_a_synthetic_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {"lib/__init__.py": "", "lib/short.py": "x = 1\n" * 400, "lib/deep/long.py": "x = 1\n" * 401},
    )
    assert long_files(tmp_path, ["lib"], 400) == [f"{Path('lib/deep/long.py')}: 401 lines"]


def test_layering_on_a_synthetic_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "lib/__init__.py": "",
            "lib/model/__init__.py": "",
            "lib/model/net.py": "import torch\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from lib.train import loop\n",
            "lib/model/ok.py": "from lib.model import net\nimport torch.nn\n",
            "lib/model/bad.py": "def f():\n    import mlflow.tracking\n",
            "lib/train/__init__.py": "",
            "lib/train/loop.py": "from lib.model.net import X\n",
        },
    )
    found = forbidden_imports(tmp_path, ["lib"], "lib.model", ("lib.train", "mlflow"))
    assert found == [
        f"{Path('lib/model/bad.py')}:2: lib.model.bad imports mlflow.tracking",
        f"{Path('lib/model/net.py')}:4: lib.model.net imports lib.train.loop",
    ]
