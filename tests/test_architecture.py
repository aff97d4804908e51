"""The package's import graph: data flows one way (settings -> plan -> loop -> output), no cycles.

Every module sits in a layer; a module imports only from its own layer or the layers below it
(imports inside functions count too), and the modules of one layer never import each other in a
circle. A new module must be given a layer here.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deforum_engine"

LAYERS = [
    ("errors",),
    ("prompts", "prompt_weights", "schedules", "styles", "samplers"),  # text and maths of their own, no settings
    ("settings",),  # the settings model
    ("importers", "importers.parseq", "importers.deforum", "presets"),  # other files -> engine settings dicts
    ("settings_files",),  # load_settings: files, presets, importers, overrides
    ("frame", "frame.motion", "frame.motion3d", "frame.warp", "frame.warp3d", "frame.cadence", "frame.color",
     "frame.adjust", "frame.noise", "audio", "images", "video", "video.clip", "video.flow", "video.hybrid",
     "video.timeline"),
    ("plan",),  # settings -> every per-frame value
    ("steps", "plot"),
    ("models", "depth", "backends", "backends.base", "backends.preview", "backends.diffusers", "backends.lockstep",
     "backends.prompt_embeddings"),
    ("output",),
    ("inputs", "summary", "video_steps"),
    ("loop",),  # the frame loop
    ("rendering",),  # render() / resume(): the recipe
    ("jobs",),
    ("batch", "ray_executor"),
    # the studio (`serve`): a web layer over rendering and batch files
    ("studio", "studio.errors", "studio.config", "studio.database"),
    ("studio.uploads", "studio.jobs", "studio.documents", "studio.safety", "studio.previews"),
    ("studio.worker", "studio.service"),
    ("studio.guard", "studio.a1111", "studio.app", "studio.server"),
    ("cli", ""),  # the command line, and the package's lazy top-level API
]
LAYER_OF = {module: depth for depth, layer in enumerate(LAYERS) for module in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The package's modules that `path` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
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
            found.update(n if n in LAYER_OF else target for n in names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("deforum_engine").lstrip(".") for alias in node.names
                         if alias.name.startswith("deforum_engine"))
    found.discard(name)
    return found


GRAPH = {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    missing = sorted(name for name in GRAPH if name not in LAYER_OF)
    assert not missing, f"give these modules a layer in tests/test_architecture.py: {missing}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_go_down(module):
    upward = sorted(target for target in GRAPH[module] if LAYER_OF.get(target, -1) > LAYER_OF[module])
    assert not upward, f"{module} (layer {LAYER_OF[module]}) imports higher layers: {upward}"


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
