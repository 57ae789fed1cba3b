"""Model card and Hub upload of a generator RL run (REFL / Diffusion-DPO / GRPO), kept out of the training loop.

`save_generator_card` renders ``output_dir/README.md`` from diffusers' training-card template;
`push_generator_run` uploads ``output_dir`` without its checkpoints and logs. Both read only what a finished trainer
exposes (``args``, ``state``, ``reward``, ``callbacks``, ``validation_history``, ``method_name``, ``paper_url``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers.utils.hub_utils import MODEL_CARD_TEMPLATE_PATH, load_or_create_model_card, populate_model_card
from huggingface_hub import ModelCard, ModelCardData


def _usage(args: Any, base: str, repo: str) -> list[str]:
    if args.use_lora:
        return [
            "from diffusers import StableDiffusionUpscalePipeline",
            f'pipe = StableDiffusionUpscalePipeline.from_pretrained("{base}")',
            f'pipe.load_lora_weights("{repo}")',
        ]
    return [
        "from diffusers import StableDiffusionUpscalePipeline, UNet2DConditionModel",
        f'unet = UNet2DConditionModel.from_pretrained("{repo}", subfolder="unet")',
        f'pipe = StableDiffusionUpscalePipeline.from_pretrained("{base}", unet=unet)',
    ]


def model_card_description(trainer: Any) -> str:
    """Markdown body of the model card: method, reward, usage, curriculum, last validation figures and panel."""
    args, output_dir = trainer.args, Path(trainer.args.output_dir)
    method = trainer.method_name.upper()
    paper = f" ([paper]({trainer.paper_url}))" if trainer.paper_url else ""
    base, repo = args.base_model or "<base model>", args.hub_model_id or output_dir.name
    lines = [
        f"# {method} {'LoRA' if args.use_lora else 'fine-tuned UNet'} for an SR generator, rewarded by FinPercep-RM",
        "",
        f"Trained with `finpercep_hf` {method}{paper} for {trainer.state.global_step} updates from "
        f"`{args.base_model or 'an SD-x4-upscaler checkpoint'}`; reward: `{trainer.reward.name}`.",
        "",
        "```python",
        *_usage(args, base, repo),
        "```",
    ]
    lines += [f"\n{callback.describe()}" for callback in trainer.callbacks if hasattr(callback, "describe")]
    if trainer.validation_history:
        last = trainer.validation_history[-1]
        lines += ["", "## Last validation (reward-hacking monitor)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.4f} |" for key, value in last.items() if key != "step"]
        panel = Path("validation") / f"step-{last['step']}" / "0_panel.png"
        if (output_dir / panel).is_file():
            lines += ["", f"![LR (bicubic) | reference policy | trained policy | HR]({panel.as_posix()})"]
    return "\n".join(lines)


def save_generator_card(trainer: Any) -> Path:
    """``output_dir/README.md`` from diffusers' training-card template. Only a run that pushes looks for a card
    already in its Hub repo (to build on it); a local run makes no network call."""
    args, output_dir = trainer.args, Path(trainer.args.output_dir)
    description = model_card_description(trainer)
    if args.push_to_hub:
        card = load_or_create_model_card(
            args.hub_model_id or output_dir.name,
            from_training=True,
            model_description=description,
            base_model=args.base_model,
        )
    else:
        card = ModelCard.from_template(
            ModelCardData(library_name="diffusers", base_model=args.base_model),
            template_path=MODEL_CARD_TEMPLATE_PATH,
            model_description=description,
        )
    tags = ["super-resolution", "diffusers", "finpercep", trainer.method_name] + (["lora"] if args.use_lora else [])
    card = populate_model_card(card, tags=tags)
    path = output_dir / "README.md"
    card.save(str(path))
    return path


def push_generator_run(args: Any) -> str:
    """Upload ``args.output_dir`` (weights, card, validation history; no checkpoints or logs) to
    ``args.hub_model_id`` (default: the directory's name); returns the repo id."""
    from huggingface_hub import HfApi

    api = HfApi()
    output_dir = Path(args.output_dir)
    repo_id = api.create_repo(args.hub_model_id or output_dir.name, exist_ok=True).repo_id
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(output_dir),
        commit_message="End of training",
        ignore_patterns=["checkpoint-*", f"{args.logging_dir}/*"],
    )
    return repo_id


__all__ = ["model_card_description", "push_generator_run", "save_generator_card"]
