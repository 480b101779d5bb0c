"""The shape of the house: no import cycles, and the packages import in one direction.

The graph counts every import, at module level and inside functions alike: a
lazy import hides a cycle from Python, not from the design. Only imports under
``if TYPE_CHECKING:`` are left out: they never run, they name a type.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "extractors", "deepmlf_cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def import_graph() -> dict[str, set[str]]:
    """module -> the first-party modules it imports (anywhere in its body)."""
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        tree = ast.parse(path.read_text())
        type_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from models.nn import deepmlf` imports the module models.nn.deepmlf
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # a package's __init__ is not an edge of its own submodules
                if target and target != name and not name.startswith(target + "."):
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_itself_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def subpackage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph with each sub-package (``models.training``, ``deepmlf_cli.workflows``) as one node.

    A top-level module (``models.run``) stays a node of its own; edges inside one node are dropped.
    """
    packages = {name for name in graph if (ROOT / name.replace(".", "/")).is_dir()}

    def node(module: str) -> str:
        parts = module.split(".")
        prefix = ".".join(parts[:2])
        return prefix if len(parts) > 2 or (len(parts) == 2 and prefix in packages) else module

    collapsed: dict[str, set[str]] = {}
    for name, edges in graph.items():
        targets = collapsed.setdefault(node(name), set())
        targets.update(node(e) for e in edges if node(e) != node(name))
    return collapsed


def test_subpackage_graph_collapses_and_finds_a_cycle_between_packages():
    graph = {"m.a.x": {"m.b.y"}, "m.b.y": {"m.a.z"}, "m.a.z": set(), "m.top": {"m.a.x"}}
    collapsed = subpackage_graph(graph)
    assert collapsed["m.top"] == {"m.a"}
    # no module cycle, but m.a -> m.b -> m.a
    assert find_cycle(graph) is None
    assert find_cycle(collapsed) in (["m.a", "m.b", "m.a"], ["m.b", "m.a", "m.b"])


def test_no_subpackage_imports_another_that_imports_it_back():
    """models.training and models.evaluation (and every other pair) import in one direction."""
    cycle = find_cycle(subpackage_graph(import_graph()))
    assert cycle is None, "sub-package cycle: " + " -> ".join(cycle)


def test_models_and_extractors_never_import_each_other_or_the_cli():
    for name, edges in import_graph().items():
        top = name.split(".")[0]
        if top in ("models", "extractors"):
            others = {e for e in edges if e.split(".")[0] != top}
            assert not others, f"{name} imports {sorted(others)}"


def test_the_model_code_imports_no_data_training_or_evaluation_code():
    """models.nn is the bottom of the model stack: data, training and evaluation build on it."""
    for name, edges in import_graph().items():
        if name.startswith("models.nn"):
            above = {e for e in edges if e.startswith(("models.data", "models.training", "models.evaluation"))}
            assert not above, f"{name} imports {sorted(above)}"


# Notes kept outside the repository; a reader of the project cannot follow them.
_OUTSIDE_REFERENCES = ("DESIGN" + ".md", "papers" + "/", "../" + "shared")


def project_text_files() -> list[Path]:
    """Every tracked-looking text file of the project (sources, docs, configs), outside build folders."""
    skip = {".venv", ".git", "runs", "deepmlf.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    suffixes = {".py", ".md", ".toml", ".txt", ".cfg", ".sh", ".yml", ".yaml", ".json"}
    return [
        p
        for p in ROOT.rglob("*")
        if p.is_file()
        and (p.suffix in suffixes or p.name == "Makefile")
        and not skip.intersection(p.relative_to(ROOT).parts)
    ]


def test_no_project_file_cites_notes_outside_the_repository():
    cites = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in project_text_files()
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if any(ref in line for ref in _OUTSIDE_REFERENCES)
    ]
    assert project_text_files(), "the walk found no files"
    assert not cites, f"cite docs/architecture.md or docs/recipe.md instead: {cites}"


def test_extractors_and_models_name_the_same_modalities():
    # extractors/ may not import models/, so it keeps its own copy of the vocabulary.
    from extractors.pipeline import ALL_MODALITIES
    from models.config import AV_MODALITIES, MODALITIES

    assert ALL_MODALITIES == frozenset(MODALITIES)
    assert AV_MODALITIES == ("audio", "vision")


def test_declared_python_is_the_one_the_code_needs():
    # resolve.py reads --config with tomllib and schemes.py uses enum.StrEnum: both 3.11+.
    # The linter and the type checker must judge the code for that same floor.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["ruff"]["target-version"] == "py311"
    assert project["tool"]["mypy"]["python_version"] == "3.11"
