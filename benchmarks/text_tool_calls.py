"""Tool calls a model wrote as text: the capable model (Qwen2.5-Coder through this llama.cpp build) writes its
calls as JSON objects in its reply instead of OpenAI tool calls. The ReAct peers read them with this, so they are
judged on what the model asked for, not on how the server returned it."""

from __future__ import annotations

import json
import uuid

from langchain_core.messages import AIMessage


def read_tool_calls(message: AIMessage, names: set[str]) -> AIMessage:
    """`message` with the tool calls its text holds as OpenAI tool calls; as it is when it has none. The capable
    model writes its calls as JSON objects {"name", "arguments"} in its text (in a ```json block, in <tool_call>
    tags, or bare) that this llama.cpp build does not turn into tool calls: read them as its template asks."""
    if message.tool_calls:
        return message
    text, calls, at = str(message.content), [], 0
    decoder = json.JSONDecoder()
    while (at := text.find("{", at)) >= 0:
        try:
            data, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at += 1
            continue
        if isinstance(data, dict) and data.get("name") in names and isinstance(data.get("arguments"), dict):
            calls.append(
                {
                    "name": data["name"],
                    "args": data["arguments"],
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "tool_call",
                }
            )
            at = end
        else:
            at += 1
    if not calls:
        return message
    return AIMessage(
        content="",
        tool_calls=calls,
        usage_metadata=message.usage_metadata,
        response_metadata=message.response_metadata,
        id=message.id,
    )
