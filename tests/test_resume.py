"""SIGKILL at several points of a run (between checkpoints and inside a checkpoint write), resume from ``latest``,
and the final weights equal an uninterrupted run's bit for bit; every file of every checkpoint loads without
unpickling. One tiny run per trainer (RM with augmentation, REFL, Diffusion-DPO, GRPO), each attempt a forked
process that kills itself with SIGKILL (see `resume_driver.py`)."""

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finpercep_hf.checkpointing import CRASH_HOOK_ENV, list_checkpoints
from resume_driver import train_and_save

FORK = multiprocessing.get_context("fork")


def _child(method: str, output_dir: Path, resume: bool, kill_at_step: int | None, kill_during_save: str | None):
    if kill_during_save:
        os.environ[CRASH_HOOK_ENV] = kill_during_save
    train_and_save(method, output_dir, resume, kill_at_step)


def attempt(method, output_dir, resume=False, kill_at_step=None, kill_during_save=None) -> int:
    """Run one attempt in a forked process; returns its exit code (-9: killed by SIGKILL)."""
    process = FORK.Process(target=_child, args=(method, output_dir, resume, kill_at_step, kill_during_save))
    process.start()
    process.join(timeout=300)
    return process.exitcode


def assert_loads_without_pickle(path: Path) -> None:
    """Every file loads as safetensors, JSON, text or with ``torch.load(weights_only=True)``; nothing else."""
    if path.suffix == ".safetensors":
        load_file(path)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix in (".md", ".txt", ".py"):  # .py: the model's remote-code files that save_pretrained copies
        path.read_text()
    elif path.suffix in (".pt", ".pth", ".bin"):
        torch.load(path, weights_only=True)
    else:
        raise AssertionError(f"{path.name}: a file that no safe loader reads")


# DPO and GRPO share REFL's loop and checkpoint code (only their draws from trainer.rng differ): slow-marked to
# keep the default suite short on 2 cores.
@pytest.mark.parametrize(
    "method", ["rm", "refl", pytest.param("dpo", marks=pytest.mark.slow), pytest.param("grpo", marks=pytest.mark.slow)]
)
def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_weights(method, tmp_path):
    reference = attempt(method, tmp_path / "reference")
    assert reference == 0
    expected = load_file(tmp_path / "reference" / "final_weights.safetensors")

    run = tmp_path / "run"
    # 1. killed inside the write of the first checkpoint: no complete checkpoint.
    assert attempt(method, run, kill_during_save="checkpoint-2") == -signal.SIGKILL
    assert list_checkpoints(run) == [] and (run / "checkpoint-2.tmp").is_dir()
    # 2. 'latest' with no complete checkpoint starts a new run; killed inside the write of checkpoint-4.
    assert attempt(method, run, resume=True, kill_during_save="checkpoint-4") == -signal.SIGKILL
    assert [path.name for path in list_checkpoints(run)] == ["checkpoint-2"]
    # 3. resumed from checkpoint-2 (the start of epoch 1), killed after update 5 (checkpoint-4 written).
    assert attempt(method, run, resume=True, kill_at_step=5) == -signal.SIGKILL
    assert [path.name for path in list_checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]
    # 4. resumed from checkpoint-4 (mid-epoch 1 for 3 updates per epoch), to the end.
    assert attempt(method, run, resume=True) == 0
    resumed = load_file(run / "final_weights.safetensors")

    assert resumed.keys() == expected.keys() and expected
    for key in expected:
        assert torch.equal(resumed[key], expected[key]), key
    for checkpoint in list_checkpoints(run) + list_checkpoints(tmp_path / "reference"):
        for path in checkpoint.rglob("*"):
            if path.is_file():
                assert_loads_without_pickle(path)
    assert not list(run.glob("*.tmp")) and not list(run.glob("*.old"))
