"""Objects named by the user as `MODULE:ATTR` or `FILE.py:ATTR` (model specs `py:` / `scripted:`, `--tools`).

Every failure is a one-line `ConfigError` naming the spec it came from, with a hint.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from decompose.errors import ConfigError

_FILE_MODULE = "_decompose_user_"  # the name prefix of modules loaded from a file path


def split_target(text: str, spec: str, form: str) -> tuple[str, str]:
    """`MODULE:ATTR` → (MODULE, ATTR); `form` names the expected shape in the error."""
    target, sep, attr = text.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise ConfigError(f"{spec!r} is not of the form {form}", hint=f"write {form}")
    return target, attr


def resolve(target: str, attr: str, spec: str) -> Any:
    """`ATTR` of the module `target` (a dotted name, or a .py file path)."""
    if target.endswith(".py") or os.sep in target:
        return attribute(load_file(target, spec), attr, spec)
    try:
        module = importlib.import_module(target)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import module {target!r} (from {spec!r}): {exc}",
            hint="check the module name and that it is installed or on PYTHONPATH",
        ) from None
    except Exception as exc:
        raise ConfigError(f"importing {target!r} (from {spec!r}) failed: {type(exc).__name__}: {exc}") from None
    return attribute(module, attr, spec)


def attribute(module: Any, attr: str, spec: str) -> Any:
    try:
        return getattr(module, attr)
    except AttributeError:
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
        where = getattr(module, "__file__", None) if module.__name__.startswith(_FILE_MODULE) else module.__name__
        raise ConfigError(
            f"{where} has no attribute {attr!r} (from {spec!r})",
            hint=f"names there include: {', '.join(public) or 'none'}",
        ) from None


def load_file(path: str, spec: str) -> Any:
    """Run a Python file as a module; it may import the modules beside it, as when run as a script."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"cannot read {path!r} (from {spec!r}): no such file", hint="check the path")
    name = f"{_FILE_MODULE}{abs(hash(str(file.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"cannot load {path!r} as Python (from {spec!r})", hint="give a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(
            f"running {path} (from {spec!r}) failed: {type(exc).__name__}: {exc}",
            hint="fix the file; run with --debug for the traceback",
        ) from exc
    return module


def call_factory(factory: Any, spec: str) -> Any:
    try:
        return factory()
    except TypeError as exc:
        raise ConfigError(
            f"{spec!r}: calling it with no arguments failed: {exc}",
            hint="point at an object, or at a factory that takes no arguments",
        ) from None
