"""[`FeedForwardSRGenerator`]: a feed-forward SR network (Real-ESRGAN/RRDB, SwinIR, HAT, any ``nn.Module``) under
the REFL trainer.

```
image_lr (B, 3, h, w) in [0, 1] -> network -> (B, 3, scale*h, scale*w), clamped to [0, 1]
REFL: loss = (relu(offset - R_k(image_sr)) + fidelity terms) * grad_scale, backpropagated through the network
```

Checkpoints of the common architectures load through `spandrel` (MIT), which detects the architecture from the
state dict (`from_pretrained`); any other network is passed in directly. Trained are a LoRA (PEFT ``LoraModel`` on
every ``Conv2d``/``Linear``; the reference policy is the network with its adapters disabled) or all the weights
(``use_lora=False``; the reference policy is a frozen copy taken when the generator is built). `save_trained_model`
writes the bare network's state dict (LoRA merged) as ``model.safetensors``, which spandrel loads back.

A network is deterministic, so it is no stochastic policy: Diffusion-DPO (denoising errors) and GRPO (per-step
log-probabilities) do not apply and raise a `NotImplementedError` saying so.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig, LoraModel
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .base import SRCondition, SRSample
from .fidelity import FidelityConfig, fidelity_loss
from .latent_diffusion import LORA_WEIGHT_NAME, unwrap_model

WEIGHTS_NAME = "model.safetensors"
NOT_A_POLICY = (
    "a feed-forward SR network is deterministic and has no denoising process, so it is no policy for "
    "Diffusion-DPO or GRPO: train it with REFLTrainer (direct reward gradient + fidelity terms)."
)


class FeedForwardSRGenerator:
    """A feed-forward x``scale`` SR network as a [`DirectSRGenerator`] (see the module docstring).

    Args:
        network: ``(B, 3, h, w) in [0, 1] -> (B, 3, scale*h, scale*w)``.
        scale: the upscaling factor of ``network``.
        fidelity: the fidelity terms of REFL (default `FidelityConfig()`: L1 to the reference network's output).
        size_multiple: LR height and width must be multiples of it (e.g. a SwinIR window size).
        lpips: an LPIPS module for ``fidelity_gt_lpips``.

    Example:

    ```python
    >>> gen = FeedForwardSRGenerator.from_pretrained("RealESRGAN_x4plus.pth")  # any spandrel SR checkpoint
    >>> gen.sample(image_lr).images.shape  # image_lr: (B, 3, 64, 64) in [0, 1]
    torch.Size([B, 3, 256, 256])
    ```
    """

    prediction_type = "direct"

    def __init__(
        self,
        network: nn.Module,
        scale: int = 4,
        fidelity: FidelityConfig | None = None,
        size_multiple: int = 1,
        lpips: nn.Module | None = None,
    ):
        if scale < 1 or size_multiple < 1:
            raise ValueError(f"scale and size_multiple must be >= 1, got {scale} and {size_multiple}.")
        self.network = network.eval().requires_grad_(False)
        self.trainable_model: nn.Module = self.network
        self.reference_network: nn.Module | None = copy.deepcopy(self.network)
        self.scale, self.size_multiple = scale, size_multiple
        self.fidelity = fidelity or FidelityConfig()
        self.lpips = lpips
        self.use_reference = False

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> FeedForwardSRGenerator:
        """Load an SR checkpoint (``.pth``, ``.safetensors``, ``.ckpt``, or a directory with ``model.safetensors``)
        through spandrel, which detects the architecture (ESRGAN/Real-ESRGAN, SwinIR, HAT, Compact, ...)."""
        from spandrel import ImageModelDescriptor, ModelLoader

        path = Path(path)
        descriptor = ModelLoader().load_from_file(path / WEIGHTS_NAME if path.is_dir() else path)
        if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose != "SR":
            raise ValueError(
                f"{path}: spandrel loaded a {descriptor.architecture.name} model for {descriptor.purpose!r}, "
                "not a single-image super-resolution network."
            )
        kwargs.setdefault("size_multiple", descriptor.size_requirements.multiple_of)
        return cls(descriptor.model, scale=descriptor.scale, **kwargs)

    # Modules, device, dtype

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.network.parameters()).dtype

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> FeedForwardSRGenerator:
        """Move the network (and the reference copy) to ``device``/``dtype``; trainable parameters stay float32."""
        for module in (self.network, self.reference_network):
            if module is not None:
                module.to(device, dtype=dtype)
        for parameter in self.trainable_parameters():
            parameter.data = parameter.data.float()
        return self

    def enable_gradient_checkpointing(self) -> None:
        raise ValueError("gradient checkpointing is not available for an arbitrary feed-forward network.")

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (parameter for parameter in unwrap_model(self.trainable_model).parameters() if parameter.requires_grad)

    # Generation

    def _check(self, image_lr: torch.Tensor) -> None:
        if image_lr.ndim != 4 or image_lr.shape[1] != 3:
            raise ValueError(f"image_lr must be (B, 3, h, w), got shape {tuple(image_lr.shape)}.")
        if image_lr.shape[-2] % self.size_multiple or image_lr.shape[-1] % self.size_multiple:
            raise ValueError(f"image_lr height and width must be multiples of {self.size_multiple}.")

    def generate_with_grad(self, image_lr: torch.Tensor) -> torch.Tensor:
        """LR (B, 3, h, w) in [0, 1] -> SR (B, 3, scale*h, scale*w) in [0, 1], with grad (the reference network
        inside `reference_policy`)."""
        self._check(image_lr)
        image_lr = image_lr.to(self.device, self.dtype)
        if self.use_reference and self.reference_network is not None:
            return self.reference_network(image_lr).float().clamp(0, 1)
        network = unwrap_model(self.trainable_model) if self.use_reference else self.trainable_model
        with torch.enable_grad():
            return network(image_lr).float().clamp(0, 1)

    @torch.no_grad()
    def sample(
        self,
        image_lr: torch.Tensor,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
    ) -> SRSample:
        """SR images without grad; ``num_inference_steps`` and ``generator`` are ignored (one deterministic call).

        ``latents`` is the SR image itself; there is no trajectory.
        """
        if return_trajectory:
            raise ValueError("a feed-forward network has no denoising trajectory.")
        images = self.generate_with_grad(image_lr).detach()
        condition = SRCondition(image_lr=image_lr, encoder_hidden_states=image_lr.new_zeros(image_lr.shape[0], 0, 0))
        return SRSample(images=images, latents=images, timesteps=torch.zeros(0, dtype=torch.long), condition=condition)

    def fidelity_loss(
        self, image_sr: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The `FidelityConfig` terms of ``image_sr`` (the reference is this network's untouched weights)."""

        def reference(image_lr: torch.Tensor) -> torch.Tensor:
            with self.reference_policy():
                return self.generate_with_grad(image_lr)

        return fidelity_loss(image_sr, batch, self.fidelity, reference, lpips=self.lpips)

    # Not a policy for DPO / GRPO

    @property
    def scheduler(self):
        raise NotImplementedError(NOT_A_POLICY)

    def encode_condition(self, image_lr: torch.Tensor, generator: torch.Generator | None = None) -> SRCondition:
        raise NotImplementedError(NOT_A_POLICY)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(NOT_A_POLICY)

    # LoRA and the reference policy

    def add_lora(
        self,
        rank: int,
        alpha: float | None = None,
        target_modules: list[str] | None = None,
        adapter_name: str = "default",
    ) -> None:
        """Wrap the network in a PEFT ``LoraModel`` (every ``Conv2d``/``Linear`` by default); only LoRA trains.

        The frozen copy is dropped: the reference policy is now the network with its adapters disabled.
        """
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}.")
        if self.has_lora:
            raise ValueError("this generator already has a LoRA adapter.")
        targets = target_modules or [
            name for name, module in self.network.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))
        ]
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else rank,
            init_lora_weights="gaussian",
            target_modules=targets,
        )
        self.trainable_model = LoraModel(self.network, config, adapter_name)
        self.reference_network = None
        for parameter in self.trainable_parameters():
            parameter.data = parameter.data.float()

    @property
    def has_lora(self) -> bool:
        return isinstance(unwrap_model(self.trainable_model), LoraModel)

    @contextmanager
    def reference_policy(self):
        """Within this context the generator is the untouched network (adapters disabled, or the frozen copy)."""
        model = unwrap_model(self.trainable_model)
        if self.has_lora:
            model.disable_adapter_layers()
        self.use_reference = True
        try:
            yield
        finally:
            self.use_reference = False
            if self.has_lora:
                model.enable_adapter_layers()

    def save_lora_weights(self, save_directory: str | Path) -> Path:
        """The LoRA weights (PEFT key format) as ``pytorch_lora_weights.safetensors``; returns the file's path."""
        if not self.has_lora:
            raise ValueError("this generator has no LoRA adapter to save (call add_lora first).")
        path = Path(save_directory) / LORA_WEIGHT_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        model = unwrap_model(self.trainable_model)
        config = next(iter(model.peft_config.values()))
        state = {key: value.detach().contiguous() for key, value in get_peft_model_state_dict(model).items()}
        metadata = {
            "rank": str(config.r),
            "alpha": str(config.lora_alpha),
            "targets": json.dumps(sorted(config.target_modules)),
        }
        save_file(state, path, metadata=metadata)
        return path

    def load_lora_weights(self, directory: str | Path) -> None:
        """Load weights written by `save_lora_weights`: into the existing adapter (same rank and targets), or,
        with none, into a new one whose rank, alpha and targets come from the file's metadata."""
        path = Path(directory) / LORA_WEIGHT_NAME
        if not self.has_lora:
            with safe_open(path, framework="pt") as weights:
                metadata = weights.metadata()
            self.add_lora(int(metadata["rank"]), float(metadata["alpha"]), json.loads(metadata["targets"]))
        state = load_file(path)
        result = set_peft_model_state_dict(unwrap_model(self.trainable_model), state)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(
                f"{directory}: LoRA keys do not match this network's adapter: {result.unexpected_keys[:3]}"
            )

    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The bare network's state dict with the LoRA (if any) merged in: the architecture's own key names."""
        model = unwrap_model(self.trainable_model)
        network = copy.deepcopy(model).merge_and_unload() if self.has_lora else model
        return {key: value.detach().contiguous() for key, value in network.state_dict().items()}

    def save_trained_model(self, save_directory: str | Path) -> Path:
        """``save_directory/model.safetensors``: the trained network (LoRA merged), loadable by spandrel."""
        path = Path(save_directory) / WEIGHTS_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(self.merged_state_dict(), path)
        return path


__all__ = ["FeedForwardSRGenerator", "NOT_A_POLICY", "WEIGHTS_NAME"]
