"""The package's imports flow one way: spec <- ml, bayes <- nonlinear <- model, io.

Walks every module's imports with ``ast`` (deferred imports inside functions
included) and checks the layering that ARCHITECTURE.md draws: ``spec`` imports
no engine, ``ml`` and ``bayes`` never import each other, nothing imports the
constructor layer from below, and there are no import cycles. The upward edges
allowed are the results' ``save()`` method, which defers to ``bayesmix.io``, and
their inference methods, which defer to ``bayesmix.inference``.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bayesmix"

#: Layer of each top-level part; a module may import its own layer and those below.
LAYERS = {
    "errors": 0,
    "spec": 1,
    "datasets": 1,
    "ml": 2,
    "bayes": 2,
    "nonlinear": 3,
    "plotting": 4,
    "inference": 4,
    "residual_diagnostics": 4,
    "plotting_residuals": 4,
    "plotting_ppc": 4,
    "plotting_effects": 4,
    "plotting_qq": 4,
    "plotting_axes": 4,
    "posterior_residuals": 4,
    "scale": 4,
    "model": 5,
    "model_overview": 5,
    "nonlinear_model": 5,
    "nls_model": 5,
    "glmm_model": 5,
    "dask_model": 5,
    "io": 6,
    "__init__": 7,
}
#: Parts of the same layer that must not import each other.
SEPARATE = {frozenset({"ml", "bayes"})}
#: (importer part, imported part) edges allowed although they go upward.
ALLOWED_UPWARD = {
    ("ml", "io"),
    ("bayes", "io"),
    ("nonlinear", "io"),
    # the results' inference methods (summary(ddf=), confint, bootstrap) defer to it
    ("ml", "inference"),
    ("nonlinear", "inference"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    # imports only a type checker runs are not edges of the running program
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("bayesmix"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("bayesmix"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        targets = set()
        for name in _imports(path, module):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_layer():
    parts = {_part(m) for m in _graph()}
    assert parts <= set(LAYERS), parts - set(LAYERS)


def test_imports_flow_one_way():
    bad = []
    for module, targets in _graph().items():
        a = _part(module)
        for target in targets:
            b = _part(target)
            if b == "__init__" and target == "bayesmix":
                b = "__init__"
            upward = LAYERS[b] > LAYERS[a] and (a, b) not in ALLOWED_UPWARD
            across = frozenset({a, b}) in SEPARATE
            if upward or across:
                bad.append(f"{module} -> {target}")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles():
    # the allowed upward edges (save() deferring to io) are not part of the import order
    graph = {
        module: {t for t in targets if (_part(module), _part(t)) not in ALLOWED_UPWARD}
        for module, targets in _graph().items()
    }
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    # The layering test can fail: an ml module importing bayes is reported.
    assert frozenset({"ml", "bayes"}) in SEPARATE
    graph = _graph()
    graph["bayesmix.ml.fit"] = graph["bayesmix.ml.fit"] | {"bayesmix.bayes.priors"}
    monkeypatch.setattr(__import__(__name__), "_graph", lambda: graph)
    try:
        test_imports_flow_one_way()
    except AssertionError as error:
        assert "bayesmix.ml.fit -> bayesmix.bayes.priors" in str(error)
    else:  # pragma: no cover - the checker would be blind
        raise AssertionError("the layering check missed an ml -> bayes import")


def test_subpackages_open_with_a_docstring_naming_what_they_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        if init.parent.name == "datasets":
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import" in doc, init
