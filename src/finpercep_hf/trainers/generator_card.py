"""Model card and Hub upload of a generator RL run (REFL / Diffusion-DPO / GRPO), kept out of the training loop.

`save_generator_card` renders ``output_dir/README.md`` from diffusers' training-card template;
`push_generator_run` uploads ``output_dir`` without its checkpoints and logs. Both read only what a finished trainer
exposes (``args``, ``state``, ``reward``, ``callbacks``, ``validation_history``, ``method_name``, ``paper_url``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from diffusers.utils.hub_utils import MODEL_CARD_TEMPLATE_PATH, load_or_create_model_card, populate_model_card
from huggingface_hub import ModelCard, ModelCardData


def _usage(generator: Any, use_lora: bool, base: str, repo: str) -> list[str]:
    """Python lines that load the run's result for the generator's family: LoRA or a fine-tuned component into the
    family's diffusers pipeline (``lora_pipeline_class``), or a feed-forward network through spandrel."""
    pipeline_class = getattr(generator, "lora_pipeline_class", None)
    if pipeline_class is None:
        return [
            "import spandrel",
            "from huggingface_hub import hf_hub_download",
            f'model = spandrel.ModelLoader().load_from_file(hf_hub_download("{repo}", "model.safetensors"))',
        ]
    pipeline = pipeline_class.__name__
    if use_lora:
        return [
            f"from diffusers import {pipeline}",
            f'pipe = {pipeline}.from_pretrained("{base}")',
            f'pipe.load_lora_weights("{repo}")',
        ]
    component = type(generator.trained_model)
    subfolder = generator.trainable_subfolder
    package = component.__module__.split(".")[0]  # `diffusers`, or the full module where the package lacks it
    module = package if hasattr(importlib.import_module(package), component.__name__) else component.__module__
    return [
        f"from diffusers import {pipeline}",
        f"from {module} import {component.__name__}",
        f'{subfolder} = {component.__name__}.from_pretrained("{repo}", subfolder="{subfolder}")',
        f'pipe = {pipeline}.from_pretrained("{base}", {subfolder}={subfolder})',
    ]


def model_card_description(trainer: Any) -> str:
    """Markdown body of the model card: method, reward, usage, curriculum, last validation figures and panel."""
    args, output_dir = trainer.args, Path(trainer.args.output_dir)
    method = trainer.method_name.upper()
    paper = f" ([paper]({trainer.paper_url}))" if trainer.paper_url else ""
    base, repo = args.base_model or "<base model>", args.hub_model_id or output_dir.name
    family = type(trainer.generator).__name__
    trained = {"unet": "UNet", "controlnet": "ControlNet", "transformer": "transformer"}.get(
        getattr(trainer.generator, "trainable_subfolder", ""), "network"
    )
    what = "LoRA" if args.use_lora else f"fine-tuned {trained}"
    lines = [
        f"# {method} {what} for an SR generator, rewarded by FinPercep-RM",
        "",
        f"Trained with `finpercep_hf` {method}{paper} for {trainer.state.global_step} updates from "
        f"`{args.base_model or 'a base checkpoint'}` ({family}); reward: `{trainer.reward.name}`.",
        "",
        "```python",
        *_usage(trainer.generator, args.use_lora, base, repo),
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
