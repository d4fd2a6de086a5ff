"""The package's layers: core/, training/, offline/ never import ros/ or cli/; no import cycles
between subpackages; every module imports.

The scan reads every import statement with the AST, those inside functions included (the package
imports heavy modules lazily, so a module-level scan alone would miss most edges).
"""
import ast
import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "face_expr_ros"
ROOT = REPO / PACKAGE
LIBRARY = ("core", "training", "offline")
FRONT_ENDS = ("ros", "cli")
NEEDS_ROS = ("ros",)  # importing these needs rclpy and the message packages


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> list[str]:
    return sorted(module_name(p) for p in ROOT.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Absolute names of the face_expr_ros modules ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    known = set(modules())
    return {m for m in found if m in known and m != name}


def subpackage(module: str) -> str:
    """``face_expr_ros.core.camera`` -> ``core``; top-level modules are their own layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def subpackage_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        src = subpackage(module_name(path))
        graph.setdefault(src, set())
        for target in imported(path):
            dst = subpackage(target)
            if dst != src and dst != PACKAGE:  # the package's __init__ holds nothing
                graph[src].add(dst)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_scan_sees_function_level_and_relative_imports(tmp_path):
    graph = subpackage_graph()
    assert "core" in graph["cli"]  # cli/main.py imports core only inside its handlers
    assert "ros" in graph["cli"]  # cli/demo.py: `from ..ros.demo import run_demo` in the handler
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("layer", LIBRARY)
def test_library_layers_import_no_front_end(layer):
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        bad += [f"{path.relative_to(REPO)} imports {m}" for m in sorted(imported(path))
                if subpackage(m) in FRONT_ENDS]
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_subpackages():
    graph = subpackage_graph()
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_import_cycles_between_modules_of_a_subpackage():
    """Within a subpackage too (offline.bag <-> offline.frames had one)."""
    graph = {module_name(p): imported(p) for p in ROOT.rglob("*.py")}
    # a package's __init__ importing its own modules is not a cycle of the modules
    graph = {m: {t for t in ts if not (module_name_is_package(t) and m.startswith(t + "."))}
             for m, ts in graph.items()}
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def module_name_is_package(module: str) -> bool:
    return (REPO / module.replace(".", "/") / "__init__.py").is_file()


@pytest.mark.parametrize("module", modules())
def test_every_module_imports(module):
    if subpackage(module) in NEEDS_ROS:
        try:
            import face_expr_msgs.msg  # noqa: F401
            import rclpy  # noqa: F401
        except ImportError as err:
            from conftest import skip_or_fail

            skip_or_fail(f"{module} needs ROS 2 ({err}); build the venv with bash .ci/setup_venv.sh")
    if module.endswith("__main__"):
        return  # runs the command line on import; the package above it is imported instead
    importlib.import_module(module)
    assert module in sys.modules
