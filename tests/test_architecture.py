"""Gates on the shape of the code: no import cycle between modules or between packages, no library file over
400 lines, a pure-torch model, benchmarks that do not reach into the tests, test modules that do not import
each other, no `fmt: skip` / `fmt: off` marker.

The import graph is read from the source with `ast` (nothing is imported), so a cycle is caught even when it
only closes inside a function body. Imports under `if TYPE_CHECKING:` never run and are left out of the module
cycle check; the package cycle check and the layering checks count them too, since a type-only import is
still a dependency.

Each checker is a plain function over a root folder, so the tests at the bottom run it on a small synthetic
package in `tmp_path` and show that it fails when it should.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("pipeline", "tdn", "jobs")
LIBRARY_PACKAGES = ("pipeline", "tdn")
# The packages of the package cycle check: in the library the second level (tdn.evaluation, pipeline.shards,
# pipeline.storage, ...), elsewhere the top level (jobs, benchmarks, tests, infra).
PACKAGE_LEVELS = {"pipeline": 2, "tdn": 2, "jobs": 1, "benchmarks": 1, "tests": 1, "infra": 1}
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
    return list(dict.fromkeys(found))  # `from m import a, b` is one line


def package_of(module: str, levels: Mapping[str, int]) -> str:
    """The package a module belongs to: its first ``levels[top]`` name parts (1 when its top is unlisted)."""
    parts = module.split(".")
    return ".".join(parts[: levels.get(parts[0], 1)])


def package_cycles(root: Path, levels: Mapping[str, int]) -> list[str]:
    """One message per cycle between packages (``package_of``), listing the imports that close it.

    Imports inside one package are left out, so the check sees what module cycles cannot: tdn.reporting ->
    tdn.evaluation -> tdn.reporting through four different modules is a cycle here. Type-only imports count.
    """
    packages = list(levels)
    modules = project_modules(root, packages)
    crossing = [
        imp
        for imp in import_graph(root, packages)
        if imp.target in modules and package_of(imp.source, levels) != package_of(imp.target, levels)
    ]
    edges: dict[str, set[str]] = {package_of(module, levels): set() for module in modules}
    for imp in crossing:
        edges[package_of(imp.source, levels)].add(package_of(imp.target, levels))
    messages = []
    for component in strongly_connected(edges):
        if len(component) == 1:
            continue
        members = set(component)
        closing = sorted(
            {
                f"{imp.source} -> {imp.target} ({imp.where()})"
                for imp in crossing
                if package_of(imp.source, levels) in members and package_of(imp.target, levels) in members
            }
        )
        messages.append(f"package cycle among {', '.join(component)}:\n    " + "\n    ".join(closing))
    return messages


def _is_test_module(module: str) -> bool:
    return module.rpartition(".")[2].startswith("test_")


def cross_test_imports(root: Path, package: str) -> list[str]:
    """Imports by a test module (``<package>/**/test_*.py``) of another test module of the package; helper
    modules (``tests/video_zoo.py``, ``tests/services.py``) are what tests share."""
    found = [
        f"{imp.where()}: {imp.source} imports {imp.target}"
        for imp in import_graph(root, [package])
        if _is_test_module(imp.source)
        and imp.target.startswith(package + ".")
        and _is_test_module(imp.target)
    ]
    return list(dict.fromkeys(found))  # `from m import a, b` is one line


# Comments that switch the formatter off for a line or a region (ruff format reads yapf's too).
FORMAT_OFF = re.compile(r"\b(?:fmt:\s*(?:skip|off)|yapf:\s*disable)\b")


def repository_python_files(root: Path) -> list[Path]:
    """The .py files git tracks or would add (untracked and not ignored): .venv/, data/ ... left out."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.py"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({root / name for name in listed.split("\0") if name and (root / name).is_file()})


def format_markers(root: Path, files: Iterable[Path]) -> list[str]:
    """'path:line: comment' for every comment that turns the formatter off (FORMAT_OFF); text inside
    strings is not a comment and does not count."""
    found = []
    for path in files:
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
        for token in tokens:
            if token.type == tokenize.COMMENT and FORMAT_OFF.search(token.string):
                found.append(f"{path.relative_to(root)}:{token.start[0]}: {token.string.strip()}")
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


def test_no_package_cycle() -> None:
    cycles = package_cycles(ROOT, PACKAGE_LEVELS)
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def test_benchmarks_do_not_import_the_tests() -> None:
    found = forbidden_imports(ROOT, ["benchmarks", "tests"], "benchmarks", ["tests"])
    assert not found, "benchmarks/ imports tests/ (move what they share into the library):\n" + "\n".join(
        found
    )


def test_no_test_module_imports_another() -> None:
    found = cross_test_imports(ROOT, "tests")
    assert not found, "test modules import test modules (share helper modules instead):\n" + "\n".join(found)


def test_no_formatter_off_markers() -> None:
    files = repository_python_files(ROOT)
    assert ROOT / "tests" / "test_architecture.py" in files and len(files) > 100, len(files)
    found = format_markers(ROOT, files)
    assert not found, "ruff format owns the layout; remove these markers:\n" + "\n".join(found)


def test_graph_sees_the_whole_project() -> None:
    """The gates above are empty only because they found nothing, not because they read nothing."""
    modules = project_modules(ROOT, PROJECT_PACKAGES)
    assert {"pipeline.storage", "tdn.model.networks", "jobs.train"} <= set(modules)
    targets = {imp.target for imp in import_graph(ROOT, PROJECT_PACKAGES) if imp.source == "jobs.train"}
    assert targets & set(modules), targets
    everything = project_modules(ROOT, list(PACKAGE_LEVELS))
    packages = {package_of(module, PACKAGE_LEVELS) for module in everything}
    assert {"tdn.evaluation", "tdn.reporting", "pipeline.shards", "benchmarks", "tests", "infra"} <= packages
    assert {"tests.test_quickstart", "tests.train_runs", "benchmarks.scale"} <= set(everything)


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


def test_package_cycle_finder_on_a_synthetic_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "lib/__init__.py": "",
            # lib.report -> lib.evaluate -> lib.report through four different modules: no module cycle.
            "lib/report/__init__.py": "",
            "lib/report/tables.py": "from lib.evaluate import results\n",
            "lib/report/html.py": "X = 1\n",
            "lib/evaluate/__init__.py": "",
            "lib/evaluate/results.py": "def f():\n    from lib.report.html import X\n",
            # lib.model <- lib.train, and lib.model -> lib.train only for type checking: still a cycle.
            "lib/model/__init__.py": "",
            "lib/model/net.py": "import typing\nif typing.TYPE_CHECKING:\n    import lib.train.loop\n",
            "lib/train/__init__.py": "",
            "lib/train/loop.py": "import lib.model.net\n",
            # one level: bench -> tests -> bench is a cycle of top-level packages; imports inside one do not count
            "lib/io.py": "import lib.model.net\n",
            "bench/__init__.py": "",
            "bench/run.py": "from tests.helpers import make\nimport bench.util\n",
            "bench/util.py": "",
            "tests/__init__.py": "",
            "tests/helpers.py": "def make():\n    import bench.util\n",
        },
    )
    levels = {"lib": 2, "bench": 1, "tests": 1}
    assert import_cycles(tmp_path, list(levels)) == []
    assert (
        package_of("lib.report.tables", levels) == "lib.report" and package_of("lib.io", levels) == "lib.io"
    )
    assert package_of("bench.run", levels) == "bench" and package_of("lib", levels) == "lib"
    cycles = package_cycles(tmp_path, levels)
    assert cycles == [
        "package cycle among bench, tests:\n"
        "    bench.run -> tests.helpers (bench/run.py:1)\n"
        "    tests.helpers -> bench.util (tests/helpers.py:2)",
        "package cycle among lib.evaluate, lib.report:\n"
        "    lib.evaluate.results -> lib.report.html (lib/evaluate/results.py:2)\n"
        "    lib.report.tables -> lib.evaluate.results (lib/report/tables.py:1)",
        "package cycle among lib.model, lib.train:\n"
        "    lib.model.net -> lib.train.loop (lib/model/net.py:3)\n"
        "    lib.train.loop -> lib.model.net (lib/train/loop.py:1)",
    ], cycles


def test_benchmark_to_tests_check_on_a_synthetic_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "bench/__init__.py": "",
            "bench/ok.py": "import lib.frames\n",
            "bench/bad.py": "def main():\n    from tests.shards import write, read\n",
            "tests/__init__.py": "",
            "tests/shards.py": "import bench.ok\n",
            "lib/__init__.py": "",
            "lib/frames.py": "",
        },
    )
    found = forbidden_imports(tmp_path, ["bench", "tests", "lib"], "bench", ["tests"])
    assert found == [f"{Path('bench/bad.py')}:2: bench.bad imports tests.shards"]


def test_test_module_import_check_on_a_synthetic_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "tests/__init__.py": "",
            "tests/helpers.py": "import tests.test_b\n",  # a helper may import anything
            "tests/test_a.py": "from tests.test_b import fit, run\nfrom tests import helpers\n",
            "tests/test_b.py": "def fit():\n    pass\nrun = fit\n",
            "tests/test_c.py": "def f():\n    from tests import test_b\nimport test_thirdparty\n",
            "tests/unit/__init__.py": "",
            "tests/unit/test_d.py": "from ..test_a import *\n",
        },
    )
    assert cross_test_imports(tmp_path, "tests") == [
        f"{Path('tests/test_a.py')}:1: tests.test_a imports tests.test_b",
        f"{Path('tests/test_c.py')}:2: tests.test_c imports tests.test_b",
        f"{Path('tests/unit/test_d.py')}:1: tests.unit.test_d imports tests.test_a",
    ]


def test_format_marker_check_on_a_synthetic_repository(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".gitignore": "ignored/\n",
            "pkg/a.py": "x = [1,2]  # fmt: skip\ny = 2\n",
            "pkg/b.py": "# fmt: off\nTABLE = [\n    1,  2,\n]\n# fmt: on\n",
            "pkg/c.py": "z = 3  # noqa: E501 #fmt:skip\n# yapf: disable\n",
            # text in strings and docstrings is not a marker; nor is a comment that only mentions fmt
            "pkg/clean.py": '"""# fmt: skip"""\ns = "# fmt: off"\n# the format: skip nothing\n',
            "ignored/d.py": "w = 4  # fmt: skip\n",
            "notes.txt": "# fmt: skip\n",
        },
    )
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    files = repository_python_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "pkg/a.py",
        "pkg/b.py",
        "pkg/c.py",
        "pkg/clean.py",
    ]
    assert format_markers(tmp_path, files) == [
        f"{Path('pkg/a.py')}:1: # fmt: skip",
        f"{Path('pkg/b.py')}:1: # fmt: off",
        f"{Path('pkg/c.py')}:1: # noqa: E501 #fmt:skip",
        f"{Path('pkg/c.py')}:2: # yapf: disable",
    ]
