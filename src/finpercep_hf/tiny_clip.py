"""Small random CLIP checkpoints built locally: the tests' fixtures and the offline quickstart's starting point.

No download: the tokenizer is a byte-level BPE with no merges (one token per byte), enough for CLIP-IQA's short
prompts, and the weights are random. Scores of an *untrained* model built this way mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def build_byte_level_clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is the 256 byte symbols, each also with the end-of-word suffix."""
    symbols = list(bytes_to_unicode().values())
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in symbols + [symbol + "</w>" for symbol in symbols]:
        vocab[symbol] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def build_tiny_clip(
    hidden_size: int = 32,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    patch_size: int = 8,
    image_size: int = 32,
    projection_dim: int = 16,
    seed: int = 0,
) -> tuple[CLIPModel, CLIPTokenizer]:
    """A random `CLIPModel` (ViT vision tower) and its byte-level tokenizer, deterministic given ``seed``."""
    tokenizer = build_byte_level_clip_tokenizer()
    tower = dict(
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
    )
    config = CLIPConfig(
        text_config=dict(
            tower,
            vocab_size=len(tokenizer),
            max_position_embeddings=64,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(tower, patch_size=patch_size, image_size=image_size),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    return CLIPModel(config).eval(), tokenizer


def save_tiny_clip(save_directory: str | Path, **kwargs) -> Path:
    """Build a tiny CLIP (see `build_tiny_clip`) and save model + tokenizer to ``save_directory``."""
    model, tokenizer = build_tiny_clip(**kwargs)
    save_directory = Path(save_directory)
    model.save_pretrained(save_directory)
    tokenizer.save_pretrained(save_directory)
    return save_directory


__all__ = ["build_byte_level_clip_tokenizer", "build_tiny_clip", "save_tiny_clip"]
