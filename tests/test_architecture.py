"""The shape of the package, read from its source: imports point one way, no circles, no private names across modules.

DESIGN.md: `instrument/` and `manual.py` -> the core -> `sinks/`; `cli.py` and
`web/` -> `report.py` -> `sinks/`. The core imports no SDK and no adapter;
adapters import no sink; nothing imports `cli` or `web`. Every import counts,
the lazy ones inside functions too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tokentrail

ROOT = Path(tokentrail.__file__).parent
PACKAGE = "tokentrail"

# Third-party SDKs and frameworks: only their adapters may import them.
SDKS = {"openai", "anthropic", "groq", "mistralai", "cohere", "google", "boto3", "botocore", "ollama", "litellm",
        "langchain_core", "langchain", "llama_index", "dspy"}
CORE = {"record", "semconv", "context", "pending", "runtime", "pipeline", "pricing", "budget", "config", "usage",
        "errors", "log", "shapes", "times", "manual", "workflow"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The tokentrail modules an `import` / `from … import …` statement loads."""
    if node.level:
        base = module.split(".")
        if not MODULES[module].name == "__init__.py":
            base = base[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = []
    for alias in node.names:
        candidate = f"{target}.{alias.name}"
        found.append(candidate if candidate in MODULES else target)
    return found


def imports(module: str) -> dict[str, list[tuple[str, int]]]:
    """{'internal': [(module, line)], 'external': [(top-level package, line)], 'private': [(name, line)]}"""
    tree = ast.parse(MODULES[module].read_text())
    out: dict[str, list[tuple[str, int]]] = {"internal": [], "external": [], "private": []}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    out["internal"].append((alias.name, node.lineno))
                else:
                    out["external"].append((alias.name.split(".")[0], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").split(".")[0] == PACKAGE:
                for target in resolve(module, node):
                    out["internal"].append((target, node.lineno))
                out["private"].extend((a.name, node.lineno) for a in node.names
                                      if a.name.startswith("_") and not a.name.startswith("__"))
            else:
                out["external"].append(((node.module or "").split(".")[0], node.lineno))
    return out


GRAPH = {m: imports(m) for m in MODULES}


def short(module: str) -> str:
    return module[len(PACKAGE) + 1:] if module != PACKAGE else PACKAGE


def test_no_import_cycles():
    edges = {m: {t for t, _ in GRAPH[m]["internal"] if t in MODULES and t != m} for m in MODULES}
    # A package's __init__ is loaded before its submodules: importing `a.b` also runs `a`.
    for m in MODULES:
        for target in list(edges[m]):
            parent = target.rsplit(".", 1)[0]
            if parent in MODULES and parent != m and not m.startswith(parent + ".") and parent != PACKAGE:
                edges[m].add(parent)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(short(c) for c in component))

    for node in sorted(edges):
        if node not in index and node != PACKAGE:
            visit(node)
    assert not cycles, f"import circles: {cycles}"


def arrows(predicate):
    return [(short(m), short(t), line) for m in MODULES for t, line in GRAPH[m]["internal"] if predicate(short(m), short(t))]


def is_core(name: str) -> bool:
    return name in CORE


def test_the_core_imports_no_adapter_no_cli_no_report_no_tracker():
    bad = arrows(lambda m, t: is_core(m) and (t.startswith("instrument") or t in ("cli", "report", "tracker", "auto")
                                               or t.startswith("web") or t == PACKAGE))
    assert not bad, bad


def test_nothing_imports_the_cli_or_the_dashboard():
    bad = arrows(lambda m, t: (t == "cli" or t.startswith("web")) and not (m == "cli" or m.startswith("web")))
    assert not bad, bad


def test_adapters_import_no_sink_and_no_tracker():
    bad = arrows(lambda m, t: m.startswith("instrument") and (t.startswith("sinks") or t in ("tracker", "report", "config")))
    assert not bad, bad


def test_sinks_import_nothing_above_them():
    bad = arrows(lambda m, t: m.startswith("sinks") and not (t.startswith("sinks") or t in ("record", "errors", "log", "times")))
    assert not bad, bad


def test_report_reads_through_sinks_only():
    bad = arrows(lambda m, t: m == "report" and (t.startswith("instrument") or t in ("runtime", "pipeline", "tracker", "pending", "manual")))
    assert not bad, bad


def test_only_adapters_import_sdks():
    bad = [(short(m), pkg, line) for m in MODULES for pkg, line in GRAPH[m]["external"]
           if pkg in SDKS and not short(m).startswith(("instrument.", "testing", "demo"))]
    assert not bad, bad


def test_no_private_name_is_imported_from_another_module():
    bad = [(short(m), name, line) for m in MODULES for name, line in GRAPH[m]["private"]]
    assert not bad, bad


def private_definitions(module: str) -> set[str]:
    """Private names a module defines: functions, classes, assignments, attributes it sets, slots it declares."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)  # __slots__ entries, getattr/setattr names
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_private_attribute_of_another_module_is_used():
    """`obj._x` where `_x` is defined by another tokentrail module but not by this one."""
    defined = {m: private_definitions(m) for m in MODULES}
    elsewhere: dict[str, set[str]] = {}
    for m, names in defined.items():
        for name in names:
            elsewhere.setdefault(name, set()).add(m)
    bad = []
    for m in MODULES:
        for node in ast.walk(ast.parse(MODULES[m].read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owners = elsewhere.get(node.attr, set())
                if owners and m not in owners:
                    bad.append((short(m), node.attr, node.lineno, sorted(short(o) for o in owners)))
    assert not bad, bad


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_the_adapter_subpackage_is_importable_by_its_name(name):
    import importlib

    module = importlib.import_module(f"tokentrail.instrument.{name}")
    assert module.__name__ == f"tokentrail.instrument.{name}"
    assert getattr(tokentrail.instrument, name) is module  # attribute access on the package works too
    assert callable(tokentrail.instrument)  # and the public function keeps its name
