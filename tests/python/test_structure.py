"""The package's own structure, read from its source: imports at module top, no import
cycles, and every import going down the layers (public -> checks and placement ->
derivative rules -> engines -> FFI call -> shared pieces; docs/design.md, "Layers")."""

import ast
import os

import pytest

import jaxmg

ROOT = os.path.dirname(jaxmg.__file__)

# Highest first. A module may import modules of its own layer or of a lower one.
LAYERS = [
    ("public", ["jaxmg", "jaxmg.linalg", "jaxmg._compat", "jaxmg._api", "jaxmg._cyclic",
                "jaxmg._general", "jaxmg.launch"]),
    ("checks and placement", ["jaxmg._plan", "jaxmg._mesh"]),
    ("derivative rules", ["jaxmg._rules", "jaxmg._dist"]),
    ("engines", ["jaxmg._engines", "jaxmg._engines.*"]),
    ("FFI call", ["jaxmg._call", "jaxmg._mpmd", "jaxmg._ffi"]),
    ("shared", ["jaxmg._geometry", "jaxmg._spmd", "jaxmg._config", "jaxmg._cuda_libs"]),
]
# Imported inside functions on purpose: optional, and only needed by what uses them.
OPTIONAL = {"matplotlib", "nvidia"}


def _modules():
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            name = ".".join(["jaxmg", *rel])
            out[name] = os.path.join(dirpath, f)
    return out


MODULES = _modules()


def _package(name):
    return name if MODULES[name].endswith("__init__.py") else name.rsplit(".", 1)[0]


def _resolve(module, node):
    """The jaxmg modules an ImportFrom / Import node names (empty for other packages)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "jaxmg"]
    if node.level == 0:
        base = node.module or ""
        if base.split(".")[0] != "jaxmg":
            return []
    else:
        base = _package(module)
        for _ in range(node.level - 1):
            base = base.rsplit(".", 1)[0]
        if node.module:
            base = f"{base}.{node.module}"
    hits = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        hits.append(sub if sub in MODULES else base)
    return hits


def _imports(module):
    """(jaxmg modules imported at module top, nested imports as (line, level, names),
    jaxmg modules imported anywhere)."""
    tree = ast.parse(open(MODULES[module]).read())
    top, nested, anywhere = [], [], []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top += _resolve(module, node)
        elif isinstance(node, ast.Try):  # guarded optional imports at module top
            for sub in node.body:
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    top += _resolve(module, sub)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in sub.names] if isinstance(sub, ast.Import) else [
                        sub.module or "."]
                    nested.append((sub.lineno, sub.level if isinstance(sub, ast.ImportFrom)
                                   else 0, names))
                    anywhere += _resolve(module, sub)
    return sorted(set(top) - {module}), nested, sorted(set(top + anywhere) - {module})


def _layer(module):
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if m == module or (m.endswith(".*") and module.startswith(m[:-1])):
                return i
    return None


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if _layer(m) is None]
    assert not missing, f"modules outside the layer table: {missing}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_at_module_top(module):
    _, nested, _ = _imports(module)
    bad = [(line, names) for line, level, names in nested
           if level or not set(n.split(".")[0] for n in names) <= OPTIONAL]
    assert not bad, f"{module} imports inside functions: {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    mine = _layer(module)
    up = [(m, LAYERS[_layer(m)][0]) for m in _imports(module)[2] if _layer(m) < mine]
    assert not up, f"{module} ({LAYERS[mine][0]}) imports from above: {up}"


def test_no_import_cycles():
    graph = {m: _imports(m)[2] for m in MODULES}  # function-level imports count too
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
