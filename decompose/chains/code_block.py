"""The program out of a model's reply: its fenced code block (```python ... ```), else the reply itself."""

from __future__ import annotations

import re
import textwrap

# A fence left open (the reply cut off at its token limit) runs to the end of the reply.
FENCED = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
PYTHON_TAGS = {"python", "python3", "py"}


def program_code(reply: str) -> str:
    """The first fenced block tagged as Python, else the first fenced block, else the whole reply."""
    blocks = [(tag.lower(), code) for tag, code in FENCED.findall(reply)]
    tagged = [code for tag, code in blocks if tag in PYTHON_TAGS]
    chosen = tagged or [code for _, code in blocks] or [reply]
    return textwrap.dedent(chosen[0]).strip()
