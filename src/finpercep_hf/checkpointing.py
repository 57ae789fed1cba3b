"""Checkpoint I/O shared by every trainer: atomic directories, ``latest`` resolution, and pickle-free state files.

Atomicity. A checkpoint (or a stage export) is written into ``<name>.tmp``, every file and the directory are
fsync-ed, and only then is it renamed to ``<name>``. Re-saving an existing ``<name>`` first renames the old one to
``<name>.old``, renames the new one in, and then deletes the old one, so at every instant the complete old or the
complete new directory exists under a name that `list_checkpoints` accepts or ignores. A process killed at any
point leaves at worst a ``.tmp`` or ``.old`` directory, which ``latest`` never selects and the next save replaces.

Safe loading. Nothing we write needs unpickling: weights and RNG states are safetensors, scheduler, trainer and
callback states are JSON, and the optimizer state is a plain tensor/number dictionary that loads with
``torch.load(..., weights_only=True)``.

Callback state. A callback whose state must survive a resume implements ``state_dict() -> dict`` (JSON-serialisable)
and ``load_state_dict(dict)``; both trainers store every such callback in ``callback_state.json`` under its class
name (see `save_callback_states` / `load_callback_states`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
CALLBACK_STATE_NAME = "callback_state.json"
PARTIAL_SUFFIX, REPLACED_SUFFIX = ".tmp", ".old"
CRASH_HOOK_ENV = "FINPERCEP_TEST_KILL_DURING_SAVE"


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(directory: str | Path) -> None:
    """fsync every file under ``directory``, then every directory bottom-up, so a rename publishes durable data."""
    directory = Path(directory)
    for root, _, files in os.walk(directory, topdown=False):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))


def partial_path(final: str | Path) -> Path:
    """The staging directory ``<final>.tmp`` that `publish_directory` renames to ``final``."""
    final = Path(final)
    return final.with_name(final.name + PARTIAL_SUFFIX)


def prepare_partial(final: str | Path) -> Path:
    """An empty staging directory for ``final`` (a stale one left by a crash is removed)."""
    partial = partial_path(final)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def crash_point(final: Path) -> None:
    """Test hook: with ``FINPERCEP_TEST_KILL_DURING_SAVE=<name>`` the process SIGKILLs itself mid-save of ``<name>``
    (its staging directory complete, not yet renamed), as a power cut would."""
    if os.environ.get(CRASH_HOOK_ENV) == final.name:
        os.kill(os.getpid(), 9)


def publish_directory(partial: str | Path, final: str | Path) -> Path:
    """Atomically replace ``final`` with the complete directory ``partial`` (see the module docstring)."""
    partial, final = Path(partial), Path(final)
    fsync_tree(partial)
    crash_point(final)
    replaced = final.with_name(final.name + REPLACED_SUFFIX)
    if replaced.exists():
        shutil.rmtree(replaced)
    if final.exists():
        final.rename(replaced)
    partial.rename(final)
    _fsync(final.parent)
    if replaced.exists():
        shutil.rmtree(replaced)
    return final


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-N`` directories of ``output_dir``, oldest first (``.tmp`` / ``.old`` ones are ignored)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [path for path in output_dir.iterdir() if path.is_dir() and CHECKPOINT_PATTERN.match(path.name)]
    return sorted(found, key=lambda path: int(CHECKPOINT_PATTERN.match(path.name).group(1)))


def prune_checkpoints(output_dir: str | Path, limit: int | None) -> None:
    """Delete the oldest checkpoints beyond ``limit`` (None keeps all)."""
    if limit is not None:
        for old in list_checkpoints(output_dir)[:-limit]:
            shutil.rmtree(old)


def resolve_checkpoint(output_dir: str | Path, resume: str | bool | None) -> Path | None:
    """The checkpoint to resume from: None for a new run; ``"latest"`` (or True) the newest complete one in
    ``output_dir`` or, if there is none, None (the run starts fresh and says so); else the named directory (a path
    or a name inside ``output_dir``), which must exist."""
    if resume in (None, False, ""):
        return None
    if resume is True or resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.warning("resume_from_checkpoint=latest: no checkpoint in %s; starting a new run.", output_dir)
            return None
        return checkpoints[-1]
    path = Path(resume)
    path = path if path.is_dir() else Path(output_dir) / str(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: no checkpoint directory {resume!r}.")
    return path


def save_json(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def rng_states_file(directory: str | Path, process_index: int) -> Path:
    return Path(directory) / f"rng_state_{process_index}.safetensors"


def save_rng_states(path: str | Path, generators: dict[str, torch.Generator]) -> None:
    """The named generators' states and the global torch RNG states (CPU, and CUDA if present) as safetensors."""
    states = {f"generator.{name}": generator.get_state() for name, generator in generators.items()}
    states["torch.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states.update({f"torch.cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())})
    save_file({key: value.contiguous() for key, value in states.items()}, str(path))


def load_rng_states(path: str | Path, generators: dict[str, torch.Generator]) -> None:
    """Restore what `save_rng_states` wrote (a missing generator in the file is an error naming the file)."""
    states = load_file(str(path))
    for name, generator in generators.items():
        key = f"generator.{name}"
        if key not in states:
            raise KeyError(f"{path} holds no state for the RNG {name!r} (keys: {sorted(states)}).")
        generator.set_state(states[key])
    torch.set_rng_state(states["torch.cpu"])
    cuda = [states[key] for key in sorted(states) if key.startswith("torch.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def stateful_callbacks(callbacks: Iterable[Any]) -> dict[str, Any]:
    """The callbacks with a JSON state (``state_dict`` + ``load_state_dict``), by class name."""
    found = {}
    for callback in callbacks:
        if hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict"):
            name = type(callback).__name__
            if name in found:
                raise ValueError(f"two stateful callbacks of the same class {name}: their states would collide.")
            found[name] = callback
    return found


def save_callback_states(callbacks: Iterable[Any], directory: str | Path) -> None:
    """``callback_state.json``: ``{class name: state_dict()}`` of every stateful callback (must be JSON)."""
    save_json(
        Path(directory) / CALLBACK_STATE_NAME,
        {name: callback.state_dict() for name, callback in stateful_callbacks(callbacks).items()},
    )


def load_callback_states(callbacks: Iterable[Any], directory: str | Path) -> None:
    """Give every stateful callback its state from ``callback_state.json`` (a callback absent there is an error)."""
    path = Path(directory) / CALLBACK_STATE_NAME
    saved = load_json(path) if path.is_file() else {}
    for name, callback in stateful_callbacks(callbacks).items():
        if name not in saved:
            raise ValueError(f"{path} has no state for the callback {name} (found: {sorted(saved)}).")
        callback.load_state_dict(saved[name])


__all__ = [
    "CALLBACK_STATE_NAME",
    "CHECKPOINT_PATTERN",
    "crash_point",
    "fsync_tree",
    "list_checkpoints",
    "load_callback_states",
    "load_json",
    "load_rng_states",
    "partial_path",
    "prepare_partial",
    "prune_checkpoints",
    "publish_directory",
    "resolve_checkpoint",
    "rng_states_file",
    "save_callback_states",
    "save_json",
    "save_rng_states",
]
