"""What a trained decomposer learns to write for a plan. The prompt it is asked with is the compact prompt in
`decompose.chains.prompts` (the same function builds it for training and for inference)."""

from __future__ import annotations

import json

from decompose.chains.prompts import COMPACT_SYSTEM, PROMPT_NAME, compact_messages, compact_prompt, tool_signature
from decompose.plan import Plan

__all__ = ["COMPACT_SYSTEM", "PROMPT_NAME", "compact_messages", "compact_prompt", "plan_target", "tool_signature"]


def plan_target(plan: Plan) -> str:
    """What the model learns to write: the plan's steps as compact JSON, keys in the grammar's order."""
    return json.dumps({"steps": plan.spec()["steps"]}, separators=(",", ":"), ensure_ascii=False)
