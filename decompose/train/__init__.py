"""Teaching a local model to decompose: training rows (`data`, `convert`, `templates`, `dataset`), the compact
prompt a trained decomposer is asked with (`prompt`), LoRA fine-tuning (`sft`) and held-out scores (`score`).

    from decompose.train import train
    report = train("train.jsonl", model="smollm2", out="my-adapter")

`train` is loaded on first use: importing this package (as the Decomposer does, for the prompt) needs no torch.
"""

from typing import Any

__all__ = ["train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from decompose.train.sft import train

        return train
    raise AttributeError(f"module 'decompose.train' has no attribute {name!r}")
