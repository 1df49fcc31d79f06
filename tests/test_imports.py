"""The package's import structure, read from the source (AST): layers and cycles.

- The shared layers (engine/, nerf/, data/, geometry/, pose/, utils/) never import a model family
  (tfglo.lolnerf, tfglo.nerf_vae): not at module level, not inside functions, not through
  importlib. The engine reaches a family only through the registry (`tfglo.MODEL_FAMILIES`).
- No import cycle among tfglo modules at module level (what runs when a module is imported),
  nor through function-level imports.
- `import tfglo` and the family registry import no TensorFlow and no family.
"""

import ast
import pathlib
import subprocess
import sys

import pytest
from absl.testing import parameterized

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "tfglo"
SHARED_LAYERS = ("engine", "nerf", "data", "geometry", "pose", "utils")
FAMILIES = ("tfglo.lolnerf", "tfglo.nerf_vae")


def module_name(path: pathlib.Path) -> str:
    """tfglo/nerf/fields.py -> "tfglo.nerf.fields"; tfglo/nerf/__init__.py -> "tfglo.nerf"."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.AST) -> list[str]:
    """The dotted names an import node (or an importlib call) imports, with their parents'
    submodules spelled out: `from tfglo import lolnerf` -> ["tfglo", "tfglo.lolnerf"]."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def all_imports(source: str) -> list[str]:
    """Every name imported anywhere in `source` (module level, functions, importlib calls)."""
    return [name for node in ast.walk(ast.parse(source)) for name in _imported(node)]


def module_level_imports(source: str) -> list[str]:
    """Names imported when the module is imported: not inside functions or lambdas (class
    bodies, if/try blocks at module level do run)."""
    names = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            names.extend(_imported(child))
            visit(child)

    visit(ast.parse(source))
    return names


def family_imports(source: str) -> list[str]:
    """The model-family modules `source` imports anywhere."""
    return [
        name
        for name in all_imports(source)
        if any(name == f or name.startswith(f + ".") for f in FAMILIES)
    ]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import)."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def package_graph(lazy: bool = False) -> dict[str, set[str]]:
    """tfglo module -> the tfglo modules it imports at module level (`lazy`: anywhere)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    walk = all_imports if lazy else module_level_imports
    graph = {}
    for path in paths:
        name = module_name(path)
        targets = {t for t in walk(path.read_text()) if t in modules}
        graph[name] = targets - {name}
    return graph


class WalkerTest(parameterized.TestCase):
    """The walkers find what they must (else the package tests below would prove nothing)."""

    @parameterized.named_parameters(
        ("module_level", "from tfglo.lolnerf import model\n", ["tfglo.lolnerf.model"]),
        ("parent", "from tfglo import lolnerf\n", ["tfglo.lolnerf"]),
        ("plain", "import tfglo.nerf_vae.encoder\n", ["tfglo.nerf_vae.encoder"]),
        ("in_function", "def f():\n    from tfglo.lolnerf import latents\n", None),
        ("importlib", "import importlib\nimportlib.import_module('tfglo.lolnerf.x')\n", None),
        ("dunder", "__import__('tfglo.lolnerf')\n", ["tfglo.lolnerf"]),
    )
    def test_finds_family_imports(self, source, expected):
        found = family_imports(source)
        self.assertTrue(found)
        if expected is not None:
            self.assertEqual([f for f in found if f in expected], expected)

    @parameterized.named_parameters(
        ("string", "NAME = 'tfglo.lolnerf.family:FAMILY'\n"),
        ("docstring", '"""See `tfglo.lolnerf.benchmarks`."""\n'),
        ("similar_name", "from tfglo.nerf import fields\nimport tfglo.lolnerfish\n"),
    )
    def test_ignores_non_imports(self, source):
        self.assertEqual(family_imports(source), [])

    def test_module_level_skips_functions_but_not_blocks(self):
        source = (
            "import a\n"
            "try:\n    import b\nexcept ImportError:\n    pass\n"
            "class C:\n    import c\n"
            "def f():\n    import d\n"
        )
        self.assertEqual(module_level_imports(source), ["a", "b", "c"])

    def test_cycle_finder(self):
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
        self.assertEqual(find_cycles(graph), [["a", "b", "c"], ["e"]])
        self.assertEqual(find_cycles({"a": {"b"}, "b": set()}), [])


@pytest.mark.parametrize("layer", SHARED_LAYERS)
def test_shared_layers_import_no_model_family(layer):
    offenders = {}
    paths = sorted((PACKAGE / layer).rglob("*.py"))
    assert paths, f"tfglo/{layer} has no modules"
    for path in paths:
        found = family_imports(path.read_text())
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert not offenders, f"model-family imports in shared code: {offenders}"


def test_no_import_cycles_among_tfglo_modules():
    graph = package_graph()
    assert len(graph) > 40 and "tfglo.engine.trainer" in graph  # the walk saw the package
    assert "tfglo.engine.family" in graph["tfglo.engine.trainer"]
    cycles = find_cycles(graph)
    assert not cycles, f"import cycles: {cycles}"


def test_no_import_cycles_through_function_level_imports_either():
    """A lazy import keeps `import tfglo` cheap; it must not hide a cycle (the old
    lolnerf <-> image renderer pair: benchmarks living in model modules)."""
    cycles = find_cycles(package_graph(lazy=True))
    assert not cycles, f"import cycles through function-level imports: {cycles}"


def test_import_tfglo_and_the_registry_import_no_tensorflow_and_no_family():
    code = (
        "import sys\n"
        "import tfglo\n"
        "from tfglo.engine import family\n"
        "names = family.family_names()\n"
        "assert 'lolnerf' in names, names\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras') or m.startswith('tfglo.lolnerf'))\n"
        "assert not loaded, loaded\n"
        "assert type(family.get_family('lolnerf')).__name__ == 'LOLNeRFFamily'\n"
        "assert 'tfglo.lolnerf.family' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
