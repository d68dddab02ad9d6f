"""The agents a server offers: the ready agents of `decompose.agents` (their consequential calls waiting for a
person with `approvals`) and `decompose` (the model alone, with the server's --tools), or exactly the
Orchestrators a caller hands to `create_app(agents=...)`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from decompose.agents import build_agent, list_agents
from decompose.checkpoints import CheckpointStore
from decompose.errors import DecomposeError
from decompose.orchestrator import Orchestrator
from decompose.serve.errors import ApiError

PLAIN = "decompose"  # the agent used when a request names none


class Catalog:
    def __init__(
        self,
        model: Any,
        *,
        tools: Sequence[Any] = (),
        options: Mapping[str, Any] | None = None,
        agents: Mapping[str, Orchestrator] | None = None,
        approvals: bool = True,
    ):
        self._model, self._tools, self._options = model, list(tools), dict(options or {})
        self._approvals = approvals
        self._custom = agents is not None
        self._built: dict[str, Orchestrator] = dict(agents or {})
        self.default = PLAIN if not self._custom else next(iter(self._built), PLAIN)

    def names(self) -> list[str]:
        return list(self._built) if self._custom else [PLAIN, *(a.name for a in list_agents())]

    def describe(self) -> list[dict[str, Any]]:
        if self._custom:
            return [
                {"name": name, "description": "", "tools": [t.name for t in orch.tools], "examples": []}
                for name, orch in self._built.items()
            ]
        plain = {
            "name": PLAIN,
            "description": "Decomposes and answers with the model alone"
            + (" and the server's tools." if self._tools else "."),
            "tools": [t.name for t in self._tools],
            "examples": [],
        }
        return [
            plain,
            *(
                {"name": a.name, "description": a.description, "tools": a.tool_names(), "examples": list(a.examples)}
                for a in list_agents()
            ),
        ]

    def get(self, name: str | None) -> tuple[str, Orchestrator]:
        """The agent's name and Orchestrator (built on first use); 404 naming the known agents."""
        name = name or self.default
        if name not in self.names():
            raise ApiError(404, f"unknown agent {name!r}", f"agents: {', '.join(self.names())}")
        if name not in self._built:
            try:
                self._built[name] = (
                    Orchestrator(self._model, tools=self._tools, **self._options)
                    if name == PLAIN
                    else build_agent(name, model=self._model, approvals=self._approvals, **self._options)
                )
            except DecomposeError as exc:  # e.g. the agent's database cannot be created
                raise ApiError(500, f"agent {name!r} cannot be built: {exc.args[0]}", exc.hint) from None
        return name, self._built[name]

    def checkpoint_stores(self) -> list[CheckpointStore]:
        """The distinct checkpoint stores of the agents: the server's, and those of agents given with their own."""
        shared = self._options.get("checkpoints")
        found = [shared, *(o.checkpoints for o in self._built.values())]
        return list({id(s): s for s in found if isinstance(s, CheckpointStore)}.values())
