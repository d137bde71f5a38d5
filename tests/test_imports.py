"""Imports run one way: the graph of jaxtl's modules, an edge for every import of one
jaxtl module by another, has no cycle.

Imports inside functions count too: deferring an import hides a cycle, it does not
remove it. (jaxtl defers imports only for heavy optional dependencies -- torch behind
`jaxtl.convert`, matplotlib, ace-jax, h5py -- and, in `jaxtl.cli`, JAX itself until the
process is tuned.)
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jaxtl"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The jaxtl modules `tree` (module `name`) imports anywhere, except under `if TYPE_CHECKING:`.
    `from P import x` counts as an import of P.x when that is a module, else of P."""
    found = set()
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of `name`
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {
        name: imported_modules(ast.parse(p.read_text()), name, p.name == "__init__.py", modules)
        for name, p in paths.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_check_finds_cycles_and_deferred_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse(
        "from jaxtl.train import loop\nfrom . import e0s\nif TYPE_CHECKING:\n    import jaxtl.md\n"
        "def f():\n    import jaxtl.cli\n"
    )
    modules = {"jaxtl.train", "jaxtl.train.loop", "jaxtl.finetune.e0s", "jaxtl.cli", "jaxtl.md", "jaxtl.finetune.x"}
    assert imported_modules(tree, "jaxtl.finetune.x", False, modules) == {
        "jaxtl.train.loop",
        "jaxtl.finetune.e0s",
        "jaxtl.cli",
    }


def test_no_import_cycles():
    graph = import_graph()
    assert (
        len(graph) > 50 and "jaxtl.train.run" in graph["jaxtl.finetune.finetune"] | graph["jaxtl.learning_curve.cell"]
    )
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_cycles_between_subpackages():
    """The parts (jaxtl.model, jaxtl.train, jaxtl.finetune, jaxtl.distill, ...) import one
    another one way too: E0 fitting lives in train, below finetune; student folders are
    read in distill, above the calculator."""
    top = lambda module: ".".join(module.split(".")[:2])  # noqa: E731
    parts: dict[str, set[str]] = {}
    for module, imported in import_graph().items():
        parts.setdefault(top(module), set()).update(top(m) for m in imported if top(m) != top(module))
    found = cycles(parts)
    assert not found, "import cycles between subpackages:\n" + "\n".join(" <-> ".join(c) for c in found)
