"""SD3 prompt embeddings computed once and cached, so that the text encoders never stay resident in training.

SD3 / SD3.5 encode a prompt with two CLIPs and T5-XXL (~9 GB in bf16) into ``prompt_embeds`` (1, 154, 4096)
(77 CLIP tokens ++ 77 T5 tokens by default) and ``pooled_prompt_embeds`` (1, 2048). The SR generators of the
paper use one fixed prompt (the empty prompt, as DiT4SR precomputes it), so the embeddings are a constant of the
run: [`cached_prompt_embeddings`] loads the text encoders once, encodes, writes a safetensors file and frees them;
later runs read the file.
"""

from __future__ import annotations

import gc
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PROMPT_EMBEDS_KEYS = ("prompt_embeds", "pooled_prompt_embeds")


def save_prompt_embeddings(
    path: str | Path, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor, prompt: str = ""
) -> Path:
    """Write (1, L, D) ``prompt_embeds`` and (1, P) ``pooled_prompt_embeds`` to safetensors (prompt as metadata)."""
    if prompt_embeds.ndim != 3 or pooled_prompt_embeds.ndim != 2:
        raise ValueError(
            f"prompt_embeds must be (1, L, D) and pooled_prompt_embeds (1, P), got {tuple(prompt_embeds.shape)} "
            f"and {tuple(pooled_prompt_embeds.shape)}."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"prompt_embeds": prompt_embeds[:1], "pooled_prompt_embeds": pooled_prompt_embeds[:1]}
    save_file(
        {key: value.detach().float().cpu().contiguous() for key, value in tensors.items()}, path, {"prompt": prompt}
    )
    return path


def load_prompt_embeddings(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prompt_embeds (1, L, D), pooled_prompt_embeds (1, P))`` float32 from a file of `save_prompt_embeddings`."""
    tensors = load_file(str(path))
    missing = [key for key in PROMPT_EMBEDS_KEYS if key not in tensors]
    if missing:
        raise ValueError(f"{path} is not a prompt-embeddings file: it lacks {missing}.")
    return tensors["prompt_embeds"], tensors["pooled_prompt_embeds"]


@torch.no_grad()
def encode_sd3_prompt(pipeline, prompt: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``prompt`` with an SD3 pipeline's three text encoders, no classifier-free guidance.

    Returns ``(prompt_embeds (1, L, D), pooled_prompt_embeds (1, P))`` as the pipeline computes them.
    """
    prompt_embeds, _, pooled_prompt_embeds, _ = pipeline.encode_prompt(
        prompt=prompt, prompt_2=None, prompt_3=None, do_classifier_free_guidance=False, num_images_per_prompt=1
    )
    return prompt_embeds, pooled_prompt_embeds


def cached_prompt_embeddings(
    name_or_path: str, prompt: str = "", cache_file: str | Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings of ``prompt`` for the SD3 checkpoint ``name_or_path``, read from ``cache_file`` if it exists.

    Otherwise only the text encoders and tokenizers of the checkpoint are loaded (no transformer, no VAE), the
    prompt is encoded, the encoders are freed and, with ``cache_file``, the result is written there.
    """
    if cache_file is not None and Path(cache_file).is_file():
        return load_prompt_embeddings(cache_file)
    from diffusers import StableDiffusion3Pipeline

    pipeline = StableDiffusion3Pipeline.from_pretrained(name_or_path, transformer=None, vae=None)
    prompt_embeds, pooled_prompt_embeds = encode_sd3_prompt(pipeline, prompt)
    del pipeline
    gc.collect()
    if cache_file is not None:
        save_prompt_embeddings(cache_file, prompt_embeds, pooled_prompt_embeds, prompt)
    return prompt_embeds.float(), pooled_prompt_embeds.float()


__all__ = [
    "PROMPT_EMBEDS_KEYS",
    "cached_prompt_embeddings",
    "encode_sd3_prompt",
    "load_prompt_embeddings",
    "save_prompt_embeddings",
]
