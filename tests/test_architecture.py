"""The package's import graph: data flows one way (settings -> plan -> output -> post -> rendering), no cycles.

Every package sits in a layer; a module imports only from its own package, its layer or the layers
below it (imports inside functions count too; `if TYPE_CHECKING:` imports, which never run, do not),
and no modules import each other in a circle. A new package must be given a layer here.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deforum_engine"

LAYERS = [
    ("errors", "limits"),  # the one error type; size, depth and count limits checked before parsing
    ("schedules", "prompts"),  # text and maths of their own, no settings
    ("config",),  # the settings model, the per-frame table, files, presets, styles, importers
    ("frame", "video"),  # pure image steps; clips, optical flow, hybrid video
    ("plan",),  # settings + loaded inputs -> every per-frame value
    ("models",),  # one cache of loaded models, offline checks
    ("backends", "control"),  # the generator interface and its backends; ControlNet units and masks
    ("output",),  # render folder, resume state, video
    ("post",),  # works on written frames (interpolation, upscaling, loops, the .srt); the recipe runs it last
    ("rendering",),  # inputs, steps, the frame loop, the recipe (post included), the summary
    ("batch",),  # jobs files, local and Ray executors
    ("studio",),  # `serve`: the web layer over the engine
    ("cli", ""),  # the command line, and the package's lazy top-level API
]
LAYER_OF = {package: depth for depth, layer in enumerate(LAYERS) for package in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path) for path in PACKAGE.rglob("*.py")}


def runtime_imports(tree: ast.AST):
    """Import nodes, leaving out the bodies of `if TYPE_CHECKING:` blocks."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def imported_modules(path: Path) -> set[str]:
    """The package's modules that `path` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("deforum_engine"):
                target = node.module.removeprefix("deforum_engine").lstrip(".")
            else:
                continue
            names = [f"{target}.{alias.name}".lstrip(".") for alias in node.names]
            found.update(n if n in MODULES else target for n in names)
        else:
            found.update(alias.name.removeprefix("deforum_engine").lstrip(".") for alias in node.names
                         if alias.name.startswith("deforum_engine"))
    found.discard(name)
    return found


GRAPH = {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    return LAYER_OF.get(module.split(".")[0], -1)


def test_every_package_has_a_layer():
    missing = sorted({name.split(".")[0] for name in GRAPH} - set(LAYER_OF))
    assert not missing, f"give these packages a layer in tests/test_architecture.py: {missing}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_go_down(module):
    upward = sorted(target for target in GRAPH[module] if layer_of(target) > layer_of(module))
    assert not upward, f"{module} (layer {layer_of(module)}) imports higher layers: {upward}"


def test_no_import_cycles():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])
