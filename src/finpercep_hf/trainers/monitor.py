"""Reward-hacking monitor for generator RL (beyond the anchors of the curriculum).

At each validation the generator samples the same LR images with the same seed twice: with its adapters (the
policy) and without them (the reference policy, sampled once and cached; for full fine-tuning the first
validation's samples serve as reference). Logged side by side:

* ``reward`` / ``reward_reference``: the *training* reward (the active RM_k) of both;
* ``base_iqa`` / ``base_iqa_reference``: a held-out IQA, the CLIP-IQA ``base_score`` of the RM in force when
  training started (RM_0 under the curriculum), which the later stages never replace;
* ``psnr``, ``ssim`` (kornia, against HR) and ``lpips`` when the `lpips` package and its AlexNet weights are
  present locally (nothing is downloaded);
* ``hacking_gap = (reward - reward_reference) - mean(base_iqa - base_iqa_reference, ssim - ssim_reference)``:
  how much faster the training reward rose than the held-out signals (all in [0, 1] units). It grows when the
  reward goes up while fidelity or the other IQA stay flat or go down: the signature of reward hacking.

Images written per validation: one panel per LR image (bicubic LR | reference | policy | HR) and the PDM heatmaps
of the policy's samples (RM_k with k >= 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from ..images import tensor_to_pil
from ..models import FinPercepRewardModel
from ..rewards import BaseIQAReward, RewardFunction
from ..visualization import save_pdm_overlay

LPIPS_ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"


def load_lpips():
    """An `lpips.LPIPS(net="alex")` if the package and torchvision's AlexNet weights are on disk, else None."""
    try:
        import lpips
    except ImportError:
        return None
    if not (Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_ALEXNET_WEIGHTS).is_file():
        return None
    return lpips.LPIPS(net="alex", verbose=False).eval().requires_grad_(False)


@dataclass
class MonitorResult:
    """One validation: ``scalars`` and the images (B, 3, H, W) in [0, 1], ``pdm`` (B, 1, H, W) or None."""

    scalars: dict[str, float]
    image_lr: torch.Tensor
    image_sr: torch.Tensor
    image_reference: torch.Tensor
    image_gt: torch.Tensor
    pdm: torch.Tensor | None


class RewardHackingMonitor:
    """Scores validation samples of the policy and of the reference policy (see the module docstring).

    Args:
        iqa: the held-out IQA (default in `from_reward`: `BaseIQAReward` over the reward's model at the start).
        lpips: an LPIPS module ``(sr, gt) in [-1, 1] -> (B, 1, 1, 1)``, or None to skip LPIPS.
    """

    def __init__(self, iqa: RewardFunction | None = None, lpips=None):
        self.iqa = iqa
        self.lpips = lpips
        self.reference: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_reward(cls, reward: RewardFunction) -> RewardHackingMonitor:
        iqa = BaseIQAReward(reward.model) if isinstance(reward.model, FinPercepRewardModel) else None
        return cls(iqa=iqa, lpips=load_lpips())

    def to(self, device: torch.device | str) -> RewardHackingMonitor:
        if self.iqa is not None:
            self.iqa.to(device)
        if self.lpips is not None:
            self.lpips.to(device)
        return self

    def fidelity(self, image_sr: torch.Tensor, image_gt: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image PSNR (dB), SSIM and LPIPS (if loaded) of SR vs HR, both (B, 3, H, W) in [0, 1]."""
        image_sr, image_gt = image_sr.float(), image_gt.float().to(image_sr.device)
        mse = (image_sr - image_gt).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
        metrics = {
            "psnr": 10 * torch.log10(1.0 / mse),
            "ssim": kornia.metrics.ssim(image_sr, image_gt, window_size=11).flatten(1).mean(dim=1),
        }
        if self.lpips is not None:
            metrics["lpips"] = self.lpips(image_sr * 2 - 1, image_gt * 2 - 1).flatten()
        return metrics

    @torch.no_grad()
    def _score(self, image_sr: torch.Tensor, image_gt: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = self.fidelity(image_sr, image_gt)
        if self.iqa is not None:
            scores["base_iqa"] = self.iqa(image_sr, differentiable=False)
        return scores

    @torch.no_grad()
    def evaluate(
        self,
        generator,
        reward: RewardFunction,
        image_lr: torch.Tensor,
        image_gt: torch.Tensor,
        num_inference_steps: int,
        seed: int = 0,
    ) -> MonitorResult:
        """Sample the policy (and, once, the reference) on ``image_lr`` (B, 3, h, w) and score both."""
        device = generator.device

        def draw() -> torch.Tensor:
            noise = torch.Generator(device=device).manual_seed(seed)
            return generator.sample(image_lr.to(device), num_inference_steps, generator=noise).images

        image_sr = draw()
        if self.reference is None:
            if generator.has_lora:
                with generator.reference_policy():
                    image_reference = draw()
            else:
                image_reference = image_sr
            self.reference = {"image": image_reference, **self._score(image_reference, image_gt)}
        current = self._score(image_sr, image_gt)
        reference_reward = reward(self.reference["image"], differentiable=False)
        current_reward = reward(image_sr, differentiable=False)

        scalars = {"reward": current_reward.mean().item(), "reward_reference": reference_reward.mean().item()}
        for name, values in current.items():
            scalars[name] = values.mean().item()
            scalars[f"{name}_reference"] = self.reference[name].mean().item()
        held_out = ["base_iqa", "ssim"] if self.iqa is not None else ["ssim"]
        held_out_gain = np.mean([scalars[name] - scalars[f"{name}_reference"] for name in held_out])
        scalars["hacking_gap"] = scalars["reward"] - scalars["reward_reference"] - float(held_out_gain)
        outputs = reward.model_outputs(image_sr)
        return MonitorResult(
            scalars=scalars,
            image_lr=image_lr.cpu(),
            image_sr=image_sr.cpu(),
            image_reference=self.reference["image"].cpu(),
            image_gt=image_gt.cpu(),
            pdm=None if outputs is None or outputs.pdm is None else outputs.pdm.float().cpu(),
        )

    @staticmethod
    def write_images(result: MonitorResult, directory: str | Path) -> dict[str, list[Path]]:
        """PNG panels ``{i}_panel.png`` (LR | reference | SR | HR) and ``{i}_pdm.png`` overlays; returns the paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        size = result.image_sr.shape[-2:]
        lr_up = F.interpolate(result.image_lr.float(), size=size, mode="bicubic", align_corners=False).clamp(0, 1)
        written: dict[str, list[Path]] = {"panels": [], "pdm": []}
        for index in range(len(result.image_sr)):
            row = torch.cat(
                [lr_up[index], result.image_reference[index], result.image_sr[index], result.image_gt[index]], dim=-1
            )
            path = directory / f"{index}_panel.png"
            tensor_to_pil(row).save(path)
            written["panels"].append(path)
            if result.pdm is not None:
                image = tensor_to_pil(result.image_sr[index])
                pdm = result.pdm[index, 0].numpy()
                title = f"reward-model PDM, max {pdm.max():.3f}"
                written["pdm"].append(save_pdm_overlay(image, pdm, directory / f"{index}_pdm.png", title=title))
        return {name: paths for name, paths in written.items() if paths}


__all__ = ["MonitorResult", "RewardHackingMonitor", "load_lpips"]
