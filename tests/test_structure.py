"""The package's structure: its modules import one another in one direction only (no import circle), and the
Orchestrator reaches executors through the protocol it is handed, never Ray's module."""

import ast
import inspect
from pathlib import Path

from helpers import plan_json

from decompose import Orchestrator, ScriptedChatModel
from decompose.models.scripted import asks_for_plan

PACKAGE = Path(__file__).resolve().parents[1] / "decompose"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports when it is itself imported: its top-level statements (an import in
    a function runs later, one under `if TYPE_CHECKING:` never), `from X import name` counting as X.name when
    that is a module (and only then)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(
                    node.body
                    + node.orelse
                    + [s for h in getattr(node, "handlers", []) for s in h.body]
                    + getattr(node, "finalbody", [])
                )
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # a submodule by name, else a name of the module itself
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in modules else node.module)

    visit(tree.body)
    # A module's own packages are imported before it, whatever it says: no edge back to them.
    own = {module_name(path).rsplit(".", n)[0] for n in range(1, module_name(path).count(".") + 1)}
    return {name for name in found if name in modules} - own


def import_graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE.rglob("*.py") if "static" not in p.parts]
    modules = {module_name(p) for p in paths}
    return {module_name(p): top_level_imports(p, modules) - {module_name(p)} for p in paths}


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as the modules along it, else None (depth-first search)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert len(graph) > 60 and "decompose.orchestrator" in graph["decompose.distributed"]  # the walk sees imports
    circle = cycle_in(graph)
    assert circle is None, " -> ".join(circle)


def test_the_cycle_check_finds_a_circle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_the_orchestrator_imports_neither_ray_nor_the_ray_executor():
    source = inspect.getsource(inspect.getmodule(Orchestrator))
    assert not [line for line in source.splitlines() if "import" in line and ("distributed" in line or "ray" in line)]


class Recording:
    """An executor of our own: answers in this process and says what it was handed."""

    def __init__(self):
        self.handed = None

    async def answer_all(self, orch, questions, *, max_concurrency, limits):
        self.handed = (orch, list(questions), max_concurrency)
        return [await orch.arun(q) for q in questions]


def test_batch_runs_on_the_executor_it_is_handed():
    orch = Orchestrator(ScriptedChatModel(rules=[(asks_for_plan, plan_json("Q?"))], default="A"))
    executor = Recording()
    results = orch.batch(["One?", "Two?"], executor=executor, max_concurrency=3)
    assert [r.question for r in results] == ["One?", "Two?"] and all(r.ok for r in results)
    assert executor.handed == (orch, ["One?", "Two?"], 3)
