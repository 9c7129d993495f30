"""The house rule of docs/contributing.md: imports only go down the layers, so there is no import cycle."""

import ast
import sys
from pathlib import Path

LOTTERY = Path(__file__).parents[1] / "lottery"

# bottom first; a module may import only modules of its own layer or of layers before it
LAYERS = [
    ["lottery.files", "lottery.rng", "lottery.plots", "lottery.nvml", "lottery.lock"],
    ["lottery.ticket"],
    ["lottery.layout"],
    ["lottery.sparsity"],
    ["lottery.pruning"],
    ["lottery.plan"],
    ["lottery.sparse_training", "lottery.export"],
    ["lottery.models"],
    ["lottery.sanity"],
    ["lottery.report"],
    ["lottery.integrations"],
    ["lottery.callback"],
    ["lottery.module", "lottery.data"],
    ["lottery.resume"],
    ["lottery.stability", "lottery.experiment"],
    ["lottery.compare"],
    ["lottery.cli"],
]
PACKAGE = "lottery"  # lottery/__init__.py re-exports the public names; nothing inside imports it


def module_name(path: Path) -> str:
    parts = path.relative_to(LOTTERY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    for i, names in enumerate(LAYERS):
        if any(name == n or name.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{name} is in no layer of tests/test_layers.py (and of docs/contributing.md): add it")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            if node.module != PACKAGE:
                found.add(node.module)
                continue
            for alias in node.names:  # `from lottery import sanity` names a submodule, `import prune` the root's
                sub = LOTTERY / alias.name
                found.add(f"{PACKAGE}.{alias.name}" if sub.is_dir() or sub.with_suffix(".py").is_file() else PACKAGE)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
    return found


def test_imports_only_go_down_the_layers():
    upward = []
    for path in sorted(LOTTERY.rglob("*.py")):
        name = module_name(path)
        if name == PACKAGE:
            continue
        for target in imports(path):
            if target == PACKAGE:
                upward.append(f"{name} imports the package root {PACKAGE}")
            elif layer(target) > layer(name):
                upward.append(f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})")
    assert not upward, "\n".join(upward)


def test_the_cli_is_the_top_floor():
    for path in LOTTERY.rglob("*.py"):
        if module_name(path) != "lottery.cli":
            assert "lottery.cli" not in imports(path), f"{path} imports lottery.cli"


def test_no_module_shadows_the_standard_library():
    # Python started inside a package folder puts it first on sys.path: a select.py there broke `import torch`
    shadowing = [str(p) for p in LOTTERY.rglob("*.py") if p.stem in sys.stdlib_module_names]
    assert not shadowing
