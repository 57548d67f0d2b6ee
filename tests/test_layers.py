"""The package's layers keep one import direction: cli -> experiments | science -> training -> views -> rundir -> core.

Every import that runs counts, function-local ones included (they hide a circle rather than remove it);
imports under ``if TYPE_CHECKING:`` only name types and do not. ``skipexp.api`` is the Python face of the
top layer, beside the CLI.
"""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "skipexp"

# left to right: a module may import its own layer and the layers to its right, never one to its left
LAYERS = [("cli", "api"), ("experiments", "science"), ("training",), ("views",), ("rundir",), ("core",)]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, typing: bool = False) -> set[str]:
    here = module_name(path)
    return imports_in(path.read_text(), here if path.name == "__init__.py" else here.rpartition(".")[0], typing)


def imports_in(text: str, package: str, typing: bool = False) -> set[str]:
    """Every skipexp module a source text imports, at any depth of its code (``from a import b`` names
    a.b where a.b is a module, else a). ``package`` resolves relative imports. With ``typing``, the imports
    under ``if TYPE_CHECKING:`` count too."""
    found = set()
    tree = ast.parse(text)
    for node in (ast.walk(tree) if typing else _runtime_nodes(tree)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in found if m == "skipexp" or m.startswith("skipexp.")}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``, which only the type checker runs."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                todo.extend(child.orelse)
            else:
                todo.append(child)


MODULES = {module_name(p) for p in PKG.rglob("*.py")}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def graph(typing: bool = False) -> dict[str, set[str]]:
    return {module_name(p): imports(p, typing) for p in sorted(PKG.rglob("*.py"))}


def wrong_direction(g: dict[str, set[str]]) -> list[str]:
    wrong = []
    for mod, deps in g.items():
        src = layer(mod)
        for dep in sorted(deps):
            dst = layer(dep)
            if src is None or dst is None:
                continue
            if dst == "cli" and src != "cli":
                wrong.append(f"{mod} imports {dep}: nothing imports cli")
            elif RANK[dst] < RANK[src]:
                wrong.append(f"{mod} ({src}) imports {dep} ({dst}), a layer to its left")
    return wrong


def cycles(g: dict[str, set[str]]) -> list[str]:
    """One line per back edge found by a depth-first walk: each closes a circle of imports."""
    edges = {m: {d for d in deps if d in g and d != m} for m, deps in g.items()}
    found, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for d in sorted(edges[m]):
            if state.get(d) == "open":
                found.append(" -> ".join((stack + [m])[(stack + [m]).index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [m])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    return found


def test_every_module_lives_in_a_layer():
    loose = sorted(m for m in MODULES if layer(m) is None and m not in ("skipexp", "skipexp.__main__"))
    assert not loose, f"modules outside the layer folders: {loose}"


def test_imports_point_only_to_the_right():
    assert not wrong_direction(graph()), "\n".join(wrong_direction(graph()))


def test_no_import_cycles_between_modules():
    assert not cycles(graph()), "\n".join(cycles(graph()))


def test_no_import_cycles_counting_type_checking_imports():
    """A circle that only a type checker follows is still a circle a reader must untangle."""
    assert not cycles(graph(typing=True)), "\n".join(cycles(graph(typing=True)))


def test_training_imports_nothing_of_views():
    """Training reports to what it is handed (a Reporter, RunViews' sinks); it draws and exports nothing itself."""
    wrong = [f"{m} imports {d}" for m, deps in graph(typing=True).items() if layer(m) == "training"
             for d in sorted(deps) if layer(d) == "views"]
    assert not wrong, "\n".join(wrong)


def test_the_checks_catch_what_they_are_for():
    # a function-local import is found, and a relative one resolved
    text = "import os\ndef f():\n    from skipexp.cli import app\n    from ..rundir import files\n"
    assert imports_in(text, "skipexp.core") == {"skipexp.cli.app", "skipexp.rundir.files"}
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from skipexp.views import plots\n"
    assert imports_in(typed, "skipexp.training") == set()
    assert imports_in(typed, "skipexp.training", typing=True) == {"skipexp.views.plots"}
    g = {"skipexp.core.fmt": {"skipexp.cli.app"}, "skipexp.views.plots": {"skipexp.experiments.sweep.spec"},
         "skipexp.rundir.files": {"skipexp.core.fmt"}, "skipexp.cli.app": set(),
         "skipexp.experiments.sweep.spec": {"skipexp.experiments.sweep.state"},
         "skipexp.experiments.sweep.state": {"skipexp.experiments.sweep.spec"}}
    assert wrong_direction(g) == ["skipexp.core.fmt imports skipexp.cli.app: nothing imports cli",
                                  "skipexp.views.plots (views) imports skipexp.experiments.sweep.spec "
                                  "(experiments), a layer to its left"]
    assert cycles(g) == ["skipexp.experiments.sweep.spec -> skipexp.experiments.sweep.state -> "
                         "skipexp.experiments.sweep.spec"]
