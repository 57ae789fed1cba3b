"""Helpers shared by the generator-RL tests."""

import os
import subprocess
import sys
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "training_scripts"


class LowResImages(torch.utils.data.Dataset):
    """Fixed random LR images (3, 8, 8) with HR companions (3, 32, 32), seeded."""

    def __init__(self, count: int):
        generator = torch.Generator().manual_seed(0)
        self.image_lr = torch.rand(count, 3, 8, 8, generator=generator)
        self.image_gt = torch.rand(count, 3, 32, 32, generator=generator)

    def __len__(self):
        return len(self.image_lr)

    def __getitem__(self, index):
        return {"image_lr": self.image_lr[index], "image_gt": self.image_gt[index]}


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Toy reward: mean brightness, (B, 3, H, W) in [0, 1] -> (B,)."""
    return images.mean(dim=(1, 2, 3))


def perturb_lora(model: torch.nn.Module, seed: int = 1) -> None:
    """LoRA B starts at zero (adapter = identity); give it values so that the adapter changes the output."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)


def launch(script: str, arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``accelerate launch --num_processes 2 --cpu training_scripts/<script> ...`` offline; asserts it succeeded."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPTS / script),
               *arguments]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result
