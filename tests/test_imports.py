"""The modules of xmc/ import one another without a cycle, counting imports inside functions too (a
lazy import that closes a cycle still ties the two modules together). A package's ``__init__``
counts by its module-level imports only, as in xmc.code_digest: the ones in its functions are the
facade's (``xmc.load`` hands over to xmc.bundle when called)."""
import ast
from pathlib import Path

XMC = Path(__file__).resolve().parents[1] / "xmc"


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of xmc/ (a compiled one by its C source)."""
    found = {}
    for path in [*XMC.rglob("*.py"), *XMC.rglob("*.c")]:
        parts = path.relative_to(XMC.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the xmc modules it imports anywhere in its body. ``from a import b`` counts as
    importing ``a.b`` where that is a module, else ``a``."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        if path.suffix == ".py":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            top = [stmt for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))]
            for node in (n for stmt in top for n in ast.walk(stmt)) if path.name == "__init__.py" else ast.walk(tree):
                if isinstance(node, ast.Import):
                    edges.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                        for _ in range(node.level - 1):
                            package = package.rpartition(".")[0]
                        base = f"{package}.{base}" if base else package
                    for alias in node.names:
                        edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_xmc_has_no_import_cycle():
    graph = import_graph()
    assert {"xmc.config", "xmc.paper", "xmc.ranker"} <= set(graph) and "xmc.config" in graph["xmc.paper"]
    assert cycles(graph) == []
