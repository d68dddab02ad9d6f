"""The command's code layout: one module per command, no import cycle, a light start-up, only public API."""

import ast
import subprocess
import sys
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "decompose"
CLI = PACKAGE / "cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The decompose modules a file imports by name, at module level or inside a function (lazily) alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("decompose")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("decompose"):
            for alias in node.names:  # `from decompose.cli import run` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if is_module(sub) else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_one_module_per_command():
    names = {p.stem for p in CLI.glob("*.py")}
    assert {"run", "chat", "agents", "eval", "exit_codes", "app", "plan_view", "output"} <= names
    assert not any(PACKAGE.glob("cli_*.py")) and not (PACKAGE / "cli.py").exists()


def test_no_import_cycle_through_the_command():
    edges = graph()
    outside = {
        m
        for m, deps in edges.items()
        if not m.startswith("decompose.cli") and any(d.startswith("decompose.cli") for d in deps)
    }
    assert not outside, f"the library imports the command: {outside}"
    for start in (m for m in edges if m.startswith("decompose.cli")):
        seen, todo = set(), [d for d in edges[start] if d.startswith("decompose.cli")]
        while todo:
            node = todo.pop()
            assert node != start, f"{start} imports itself back"
            if node not in seen:
                seen.add(node)
                todo += [d for d in edges.get(node, ()) if d.startswith("decompose.cli")]
    # The commands import the exit codes from their own module, never from the module that dispatches to them.
    for name, deps in edges.items():
        if name.startswith("decompose.cli.") and name not in ("decompose.cli.__main__",):
            assert "decompose.cli.app" not in deps and "decompose.cli" not in deps, name


def test_starting_the_command_imports_no_third_party_library():
    code = (
        "import sys, decompose.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'langchain_core', 'pydantic'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


def test_the_command_uses_only_public_names_of_the_library():
    for path in CLI.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("decompose"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, (path.name, node.module, private)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "orch":
                assert not node.attr.startswith("_") and node.attr != "decomposer", (path.name, node.attr)
