"""[`SD3LRStreamTransformer2DModel`]: an SD3 MMDiT with an LR stream in the manner of DiT4SR.

DiT4SR (Duan et al. 2025, https://huggingface.co/papers/2503.23580) conditions SD3.5's MMDiT on the LR image by
letting the LR latents join the *same* joint attention as the noisy latents and the prompt, as a third stream:

```
noisy latents x_t (B,16,h,w) --pos_embed--> N tokens ┐
LR latents        (B,16,h,w) --pos_embed--> N tokens ┼ shared adaLN (norm1) of x_t's stream, per block
prompt embeddings (B,L,4096) --context_embedder--> L ┘
joint attention: q/k/v of the LR tokens = to_q/k/v(l) + to_q/k/v_control(l)    (zero-initialised *_control)
                 outputs: noisy -> to_out[0], LR -> to_out_control (initialised as a copy of to_out[0]), prompt
control feed-forward: ff.net[0] (GELU projection) on noisy and LR tokens; the LR activations go through a
                 zero-initialised depthwise 3x3 conv on the (h/p, w/p) grid and are added to the noisy activations;
                 then ff.net[2] (out projection)                                 # LR features -> noisy stream
output: norm_out + proj_out of the noisy tokens only -> velocity (B,16,h,w)
```

The SD3 modules keep their names (``transformer_blocks.{i}...``), so an SD3 / SD3.5 transformer's weights load into
this class; the LR-stream modules are ``lr_stream.{i}.{to_q_control, to_k_control, to_v_control, to_out_control,
control_conv}``. Without ``controlnet_image`` the model is a plain `SD3Transformer2DModel` (so the stock SD3
pipelines run it and load LoRA into it). DiT4SR's own checkpoint (``acceptee/DiT4SR``) uses its own module names:
load it with DiT4SR's class through ``transformer_class="path/to/transformer_sd3.py:SD3Transformer2DModel"`` (see
[`FlowSRGenerator`]); that class takes the LR latents as ``controlnet_image``, the keyword used here too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import SD3Transformer2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import FeedForward, JointTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.utils import apply_lora_scale
from torch import nn


class LRStreamLayer(nn.Module):
    """The LR-stream weights of one joint block: zero-initialised q/k/v deltas, an output projection and the
    zero-initialised depthwise 3x3 conv of the control feed-forward.

    Args:
        dim: token width (``num_attention_heads * attention_head_dim``).
        ff_inner_dim: hidden width of the block's feed-forward (4 * dim in SD3).
    """

    def __init__(self, dim: int, ff_inner_dim: int):
        super().__init__()
        self.to_q_control = nn.Linear(dim, dim)
        self.to_k_control = nn.Linear(dim, dim)
        self.to_v_control = nn.Linear(dim, dim)
        self.to_out_control = nn.Linear(dim, dim)
        self.control_conv = nn.Conv2d(ff_inner_dim, ff_inner_dim, 3, padding=1, groups=ff_inner_dim)
        for module in (self.to_q_control, self.to_k_control, self.to_v_control, self.control_conv):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def joint_attention(
        self, attn: Attention, hidden: torch.Tensor, lr: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One joint attention over noisy (B, N, D), LR (B, N, D) and prompt (B, L, D) tokens.

        Returns the noisy ++ LR outputs (B, 2N, D) and the prompt outputs (B, L, D) (None in a last,
        ``context_pre_only`` block).
        """
        batch, num_tokens = hidden.shape[:2]
        heads = attn.heads

        def split_heads(tokens: torch.Tensor) -> torch.Tensor:
            return tokens.unflatten(-1, (heads, -1))

        query = split_heads(torch.cat([attn.to_q(hidden), attn.to_q(lr) + self.to_q_control(lr)], dim=1))
        key = split_heads(torch.cat([attn.to_k(hidden), attn.to_k(lr) + self.to_k_control(lr)], dim=1))
        value = split_heads(torch.cat([attn.to_v(hidden), attn.to_v(lr) + self.to_v_control(lr)], dim=1))
        if attn.norm_q is not None:
            query, key = attn.norm_q(query), attn.norm_k(key)
        context_query = split_heads(attn.add_q_proj(context))
        context_key = split_heads(attn.add_k_proj(context))
        context_value = split_heads(attn.add_v_proj(context))
        if attn.norm_added_q is not None:
            context_query, context_key = attn.norm_added_q(context_query), attn.norm_added_k(context_key)
        query = torch.cat([query, context_query], dim=1).transpose(1, 2)
        key = torch.cat([key, context_key], dim=1).transpose(1, 2)
        value = torch.cat([value, context_value], dim=1).transpose(1, 2)
        output = F.scaled_dot_product_attention(query, key, value).transpose(1, 2).flatten(2).to(query.dtype)
        noisy_output = attn.to_out[1](attn.to_out[0](output[:, :num_tokens]))
        lr_output = self.to_out_control(output[:, num_tokens : 2 * num_tokens])
        context_output = None if attn.context_pre_only else attn.to_add_out(output[:, 2 * num_tokens :])
        return torch.cat([noisy_output, lr_output], dim=1), context_output

    def feed_forward(self, ff: FeedForward, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The block's feed-forward on noisy ++ LR tokens (B, 2N, D), the LR activations conv'd into the noisy ones."""
        activations = ff.net[1](ff.net[0](tokens))
        num_tokens = tokens.shape[1] // 2
        noisy, lr = activations[:, :num_tokens], activations[:, num_tokens:]
        lr_grid = lr.transpose(1, 2).reshape(lr.shape[0], lr.shape[2], *grid)
        noisy = noisy + self.control_conv(lr_grid).flatten(2).transpose(1, 2)
        output = torch.cat([noisy, lr], dim=1)
        for module in ff.net[2:]:
            output = module(output)
        return output

    def block_forward(
        self,
        block: JointTransformerBlock,
        hidden: torch.Tensor,
        lr: torch.Tensor,
        context: torch.Tensor,
        temb: torch.Tensor,
        grid: tuple[int, int],
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``block`` (an SD3 joint block) with this LR stream; returns (context, noisy, LR) tokens."""
        num_tokens = hidden.shape[1]
        tokens = torch.cat([hidden, lr], dim=1)
        if block.use_dual_attention:
            norm_tokens, gate_msa, shift_mlp, scale_mlp, gate_mlp, norm_tokens2, gate_msa2 = block.norm1(tokens, temb)
        else:
            norm_tokens, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.norm1(tokens, emb=temb)
        if block.context_pre_only:
            norm_context = block.norm1_context(context, temb)
        else:
            norm_context, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = block.norm1_context(context, emb=temb)

        attn_output, context_attn_output = self.joint_attention(
            block.attn, norm_tokens[:, :num_tokens], norm_tokens[:, num_tokens:], norm_context
        )
        tokens = tokens + gate_msa.unsqueeze(1) * attn_output
        if block.use_dual_attention:
            tokens = tokens + gate_msa2.unsqueeze(1) * block.attn2(hidden_states=norm_tokens2)
        norm_tokens = block.norm2(tokens) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        tokens = tokens + gate_mlp.unsqueeze(1) * self.feed_forward(block.ff, norm_tokens, grid)

        if block.context_pre_only:
            context = None
        else:
            context = context + c_gate_msa.unsqueeze(1) * context_attn_output
            norm_context = block.norm2_context(context) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
            context = context + c_gate_mlp.unsqueeze(1) * block.ff_context(norm_context)
        return context, tokens[:, :num_tokens], tokens[:, num_tokens:]


class SD3LRStreamTransformer2DModel(SD3Transformer2DModel):
    """`SD3Transformer2DModel` + a DiT4SR-style LR stream (see the module docstring); same config arguments.

    Example:

    ```python
    >>> base = SD3Transformer2DModel.from_pretrained(
    ...     "stabilityai/stable-diffusion-3.5-medium", subfolder="transformer"
    ... )
    >>> model = SD3LRStreamTransformer2DModel.from_sd3(base)  # SD3.5 weights, LR stream initialised as DiT4SR's
    >>> velocity = model(latents, controlnet_image=lr_latents, encoder_hidden_states=prompt_embeds,
    ...                  pooled_projections=pooled, timestep=t).sample  # (B, 16, h, w)
    >>> model.save_pretrained("dit-lr-stream")  # loads back with SD3LRStreamTransformer2DModel.from_pretrained
    ```
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 128,
        patch_size: int = 2,
        in_channels: int = 16,
        num_layers: int = 18,
        attention_head_dim: int = 64,
        num_attention_heads: int = 18,
        joint_attention_dim: int = 4096,
        caption_projection_dim: int = 1152,
        pooled_projection_dim: int = 2048,
        out_channels: int = 16,
        pos_embed_max_size: int = 96,
        dual_attention_layers: tuple[int, ...] = (),
        qk_norm: str | None = None,
    ):
        super().__init__(
            sample_size=sample_size,
            patch_size=patch_size,
            in_channels=in_channels,
            num_layers=num_layers,
            attention_head_dim=attention_head_dim,
            num_attention_heads=num_attention_heads,
            joint_attention_dim=joint_attention_dim,
            caption_projection_dim=caption_projection_dim,
            pooled_projection_dim=pooled_projection_dim,
            out_channels=out_channels,
            pos_embed_max_size=pos_embed_max_size,
            dual_attention_layers=dual_attention_layers,
            qk_norm=qk_norm,
        )
        ff_inner_dim = self.transformer_blocks[0].ff.net[2].in_features
        self.lr_stream = nn.ModuleList([LRStreamLayer(self.inner_dim, ff_inner_dim) for _ in range(num_layers)])
        self.copy_output_projections()

    def copy_output_projections(self) -> None:
        """Set each ``to_out_control`` to a copy of its block's ``attn.to_out[0]`` (DiT4SR's initialisation)."""
        with torch.no_grad():
            for block, layer in zip(self.transformer_blocks, self.lr_stream):
                layer.to_out_control.weight.copy_(block.attn.to_out[0].weight)
                layer.to_out_control.bias.copy_(block.attn.to_out[0].bias)

    @classmethod
    def from_sd3(cls, transformer: SD3Transformer2DModel) -> SD3LRStreamTransformer2DModel:
        """An LR-stream model with an SD3 / SD3.5 ``transformer``'s weights and a freshly initialised LR stream."""
        config = {key: value for key, value in transformer.config.items() if not key.startswith("_")}
        model = cls(**config).to(transformer.dtype)
        missing, unexpected = model.load_state_dict(transformer.state_dict(), strict=False)
        if unexpected or any(not key.startswith("lr_stream.") for key in missing):
            raise ValueError(f"{type(transformer).__name__} does not match the SD3 layout: {unexpected[:3]}")
        model.copy_output_projections()
        return model

    @apply_lora_scale("joint_attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        controlnet_image: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        pooled_projections: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        block_controlnet_hidden_states: list[torch.Tensor] | None = None,
        joint_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        skip_layers: list[int] | None = None,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Velocity of noisy latents (B, C, h, w) given LR latents ``controlnet_image`` (B, C, h, w), the prompt
        embeddings (B, L, joint_attention_dim), pooled projections (B, pooled_projection_dim) and timesteps (B,) in
        [0, 1000]. Without ``controlnet_image``: `SD3Transformer2DModel.forward`.
        """
        if controlnet_image is None:
            return super().forward(
                hidden_states,
                encoder_hidden_states=encoder_hidden_states,
                pooled_projections=pooled_projections,
                timestep=timestep,
                block_controlnet_hidden_states=block_controlnet_hidden_states,
                joint_attention_kwargs=joint_attention_kwargs,
                return_dict=return_dict,
                skip_layers=skip_layers,
            )
        if controlnet_image.shape != hidden_states.shape:
            raise ValueError(
                f"controlnet_image {tuple(controlnet_image.shape)} must have the latents' shape "
                f"{tuple(hidden_states.shape)} (LR latents of the upsampled LR image)."
            )
        height, width = hidden_states.shape[-2:]
        patch_size = self.config.patch_size
        grid = (height // patch_size, width // patch_size)
        hidden = self.pos_embed(hidden_states).contiguous()
        lr = self.pos_embed(controlnet_image.to(hidden_states.dtype)).contiguous()
        temb = self.time_text_embed(timestep, pooled_projections)
        context = self.context_embedder(encoder_hidden_states)

        for index, (block, layer) in enumerate(zip(self.transformer_blocks, self.lr_stream)):
            if skip_layers is not None and index in skip_layers:
                continue
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                context, hidden, lr = self._gradient_checkpointing_func(
                    layer.block_forward, block, hidden, lr, context, temb, grid
                )
            else:
                context, hidden, lr = layer.block_forward(block, hidden, lr, context, temb, grid)
            if block_controlnet_hidden_states is not None and not block.context_pre_only:
                interval = len(self.transformer_blocks) / len(block_controlnet_hidden_states)
                hidden = hidden + block_controlnet_hidden_states[int(index / interval)]

        hidden = self.proj_out(self.norm_out(hidden, temb))
        hidden = hidden.reshape(hidden.shape[0], *grid, patch_size, patch_size, self.out_channels)
        output = torch.einsum("nhwpqc->nchpwq", hidden).reshape(hidden.shape[0], self.out_channels, height, width)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)


__all__ = ["LRStreamLayer", "SD3LRStreamTransformer2DModel"]
