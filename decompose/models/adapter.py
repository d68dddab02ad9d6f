"""LoRA adapters (what `decompose train` writes) merged into a local model's weights when it loads.

Merged, the model runs at the speed of the base model: no adapter layers at inference. An adapter folder holds
peft's `adapter_config.json` and weights, and `decompose_adapter.json`: the base model and the prompt it was
trained on, which the Decomposer then uses for that model.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from decompose.errors import ConfigError

INFO_FILE = "decompose_adapter.json"
# The decomposer adapter shipped for the embedded model (made by `decompose train`: see its decompose_adapter.json).
DEFAULT_ADAPTER = Path(__file__).parent / "adapters" / "smollm2-decomposer"
NO_ADAPTER = (False, "none")  # what `adapter=` (and `--adapter`) take for the embedded model without it
_HINT = "pass the folder `decompose train --out DIR` wrote (it holds adapter_config.json)"


def adapter_info(path: str | os.PathLike) -> dict[str, Any]:
    """What `decompose train` recorded about the adapter in `path` ({} for an adapter made elsewhere);
    ConfigError when `path` is not an adapter folder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"adapter folder {path} does not exist", hint=_HINT)
    if not (folder / "adapter_config.json").is_file():
        raise ConfigError(f"{path} is not an adapter folder (no adapter_config.json)", hint=_HINT)
    info = folder / INFO_FILE
    try:
        return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{info} is unreadable ({exc})", hint="train the adapter again") from None


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """peft 0.21 calls a transformers name deprecated in v5: a warning nothing a user does can fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing`", category=FutureWarning)
        yield


def merge_adapter(model: Any, path: str | Path) -> Any:
    """`model` with the LoRA adapter in `path` merged into its weights."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError("loading an adapter needs the peft package", hint="pip install peft") from None
    try:
        with quiet_peft():
            return PeftModel.from_pretrained(model, str(Path(path).expanduser())).merge_and_unload()
    except (RuntimeError, ValueError, KeyError, OSError) as exc:  # e.g. trained for another base model's shapes
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"adapter {path} does not fit this model ({first_line[:200]})",
            hint="load it with the base model it was trained on (see its decompose_adapter.json)",
        ) from None
