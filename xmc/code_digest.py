"""Which modules of the ``xmc`` package a workflow script runs, and a digest of them.

Snakemake reruns a job when its params change, but it does not look inside an imported package. Each
rule therefore carries, as a param, a digest of its script and of every ``xmc`` module the script
imports, transitively: editing a module reruns exactly the rules that can run its code, and no list
of modules has to be kept by hand.

Imports are read from the source (``ast``), not by importing: ``import xmc.a``, ``from xmc.a import
b`` (b a module or a name), relative imports, and imports inside functions (a lazy import still runs
the module when the function is called). A compiled module counts by its C source next to where its
``.py`` would be (``xmc/_dcd.c``). A package's ``__init__.py`` runs whenever one of its modules
is imported, so it counts too, but only its module-level imports are followed: the ones in its
functions (``xmc.load``'s lazy import of the bundle code) run only when that function is called.

A Python file counts by its code, not its bytes: the digest hashes the parsed module with its
docstrings removed, written back out (``ast.unparse``), so editing a comment, a docstring or the
layout reruns nothing, while any change to the code (one token) changes the digest. ``ast.unparse``
rather than ``ast.dump``: its text follows the source, not the AST's field list, which changes
between Python versions. The one place a docstring reaches the program is a ``--help`` text
(``__doc__``), which no rule's output holds. A C source counts by its bytes, so a C comment still
counts.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

__all__ = ["module_files", "code_bytes", "digest"]


def _module_file(root: Path, package: str, dotted: str) -> Path | None:
    """File of module ``dotted`` (e.g. ``xmc.matcher.linear``) under ``root`` (the package folder)."""
    parts = dotted.split(".")
    if parts[0] != package:
        return None
    base = root.joinpath(*parts[1:])
    # a compiled module (xmc._dcd) counts by its C source: editing the solver reruns its rules
    for candidate in (*((base.with_suffix(".py"), base.with_suffix(".c")) if parts[1:] else ()), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _dotted_name(root: Path, package: str, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [package, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_nodes(tree: ast.Module, top_level_only: bool):
    """Import nodes of a module; with ``top_level_only``, none inside a function or class body."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imported_modules(tree: ast.Module, current: str, is_package: bool, top_level_only: bool) -> set[str]:
    """Dotted names of the modules (or names in modules) that ``tree`` imports."""
    found = set()
    for node in _import_nodes(tree, top_level_only):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:  # relative: from the current package, up level - 1
            package = current if is_package else current.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            module = f"{package}.{node.module}" if node.module else package
        else:
            module = node.module
        found.add(module)
        found.update(f"{module}.{alias.name}" for alias in node.names)  # kept where it is a module
    return found


@functools.lru_cache(maxsize=None)
def _file_imports(path: str, mtime_ns: int, size: int, name: str, is_package: bool) -> frozenset[str]:
    """What one file imports, parsed once per version of the file (the key holds its mtime and size):
    every rule's digest walks the same xmc modules, and the Snakefile computes them all at start-up."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    return frozenset(_imported_modules(tree, name, is_package, top_level_only=is_package))


def module_files(script, root, package: str = "xmc") -> list[Path]:
    """The files of ``package`` (its folder is ``root``) that ``script`` runs, transitively, sorted."""
    root = Path(root)
    seen: dict[Path, None] = {}
    todo = [(Path(script), None, False)]  # (file, its dotted name or None for the script, is a package)
    while todo:
        path, name, is_package = todo.pop()
        if path.suffix == ".c":  # imports nothing of the package
            continue
        stat = path.stat()
        for dotted in _file_imports(str(path), stat.st_mtime_ns, stat.st_size, name or "", is_package):
            parts = dotted.split(".")
            # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            for i in range(1, len(parts) + 1):
                found = _module_file(root, package, ".".join(parts[:i]))
                if found is not None and found not in seen:
                    seen[found] = None
                    todo.append((found, _dotted_name(root, package, found), found.name == "__init__.py"))
    return sorted(seen)


def _strip_docstrings(tree: ast.Module) -> ast.Module:
    """``tree`` without the docstrings of its module, classes and functions (a body left empty gets
    ``pass``, which is what a docstring-only body does)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or ([ast.Pass()] if not isinstance(node, ast.Module) else [])
    return tree


@functools.lru_cache(maxsize=None)
def _python_code(source: bytes, filename: str) -> bytes:
    """A Python source's code, parsed once per content (every rule's digest walks the same modules)."""
    return ast.unparse(_strip_docstrings(ast.parse(source, filename=filename))).encode()


def code_bytes(path) -> bytes:
    """What of ``path`` its digest counts: a Python file's code without comments, docstrings and
    layout; any other file's bytes."""
    source = Path(path).read_bytes()
    return _python_code(source, str(path)) if str(path).endswith(".py") else source


def digest(script, root, package: str = "xmc") -> str:
    """sha256 (16 hex digits) of the code of ``script`` and of every ``package`` file it runs, with
    their paths."""
    root, script = Path(root), Path(script)
    h = hashlib.sha256()
    h.update(script.name.encode() + b"\0" + code_bytes(script))
    for path in module_files(script, root, package):
        h.update(b"\0" + path.relative_to(root).as_posix().encode() + b"\0" + code_bytes(path))
    return h.hexdigest()[:16]
