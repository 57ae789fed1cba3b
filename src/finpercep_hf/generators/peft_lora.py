"""[`PeftLoRAMixin`]: LoRA through PEFT on a generator's denoiser, shared by the generators of this package.

The denoiser is ``trainable_model`` (the UNet or the DiT) or, once the trainer has wrapped it for DDP or
``torch.compile``, the module inside; ``base_model`` unwraps it. The reference policy pi_ref of Diffusion-DPO and
GRPO is the same denoiser with its adapters disabled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from peft import LoraConfig
from torch import nn

DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


class PeftLoRAMixin:
    """``add_lora``, ``has_lora``, ``reference_policy`` and ``trainable_parameters`` over ``trainable_model``."""

    trainable_model: nn.Module

    @property
    def base_model(self) -> nn.Module:
        """The bare denoiser (unwrapped from the DDP/compile wrappers the trainer may have put around it)."""
        model = self.trainable_model
        while hasattr(model, "module") or hasattr(model, "_orig_mod"):
            model = getattr(model, "module", None) or model._orig_mod
        return model

    def add_lora(
        self,
        rank: int,
        alpha: float | None = None,
        target_modules: list[str] | None = None,
        adapter_name: str = "default",
    ) -> None:
        """Add a LoRA adapter (PEFT, ``lora_B = 0``) to the denoiser's attention projections; freeze the rest."""
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}.")
        self.base_model.requires_grad_(False)
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else rank,
            init_lora_weights="gaussian",
            target_modules=list(target_modules or DEFAULT_LORA_TARGETS),
        )
        self.base_model.add_adapter(config, adapter_name=adapter_name)
        for parameter in self.trainable_parameters():
            parameter.data = parameter.data.float()

    @property
    def has_lora(self) -> bool:
        return bool(getattr(self.base_model, "_hf_peft_config_loaded", False))

    @contextmanager
    def reference_policy(self):
        """Within this context the denoiser runs without its adapters: the frozen reference policy pi_ref."""
        if not self.has_lora:
            raise ValueError(
                "reference_policy needs LoRA adapters (call add_lora first): without them the "
                "trained denoiser and the reference are the same weights."
            )
        self.base_model.disable_adapters()
        try:
            yield
        finally:
            self.base_model.enable_adapters()

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (parameter for parameter in self.base_model.parameters() if parameter.requires_grad)


__all__ = ["DEFAULT_LORA_TARGETS", "LORA_WEIGHT_NAME", "PeftLoRAMixin"]
