"""Model-card rendering for FinPercep-RM checkpoints, and the save/push helpers that write the card.

The templates live in the repository's top-level ``model_card/`` and ``dataset_card/`` folders and are packaged
into ``finpercep_hf/cards/`` in a wheel; `card_template_path` finds either.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .models import FinPercepImageProcessor, FinPercepRewardModel

STAGE_DESCRIPTIONS = {0: "CLIP-IQA encoder only", 1: "+ decoder and coupled score head"}
TEMPLATE_FOLDERS = {"model_card": "model_card/template.md", "dataset_card": "dataset_card/template.md"}


def card_template_path(kind: str) -> Path:
    """Path of the ``model_card`` or ``dataset_card`` template (installed wheel first, then the source tree)."""
    if kind not in TEMPLATE_FOLDERS:
        raise ValueError(f"kind must be one of {sorted(TEMPLATE_FOLDERS)}, got {kind!r}.")
    packaged = Path(__file__).parent / "cards" / f"{kind}.md"
    source = Path(__file__).resolve().parents[2] / TEMPLATE_FOLDERS[kind]
    for path in (packaged, source):
        if path.is_file():
            return path
    raise FileNotFoundError(f"the {kind} template is missing (looked at {packaged} and {source}).")


def render_model_card(
    model: FinPercepRewardModel,
    repo_id: str | None = None,
    training_data: str | None = None,
    metrics: dict[str, float] | None = None,
    untrained: bool = False,
) -> ModelCard:
    """Render the model card of ``model`` (stage, base CLIP, head, parameters, data, metrics, limits)."""
    config = model.config
    stage = config.stage
    name = repo_id or f"finpercep-rm-stage{stage}"
    clip = config.clip_name_or_path
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        license="apache-2.0",
        base_model=clip if clip and not Path(clip).exists() else None,  # a Hub id, not a local directory
        tags=["finpercep", "image-quality-assessment", "reward-model", "super-resolution", f"stage-{stage}"],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(card_template_path("model_card")),
        model_name=name,
        repo_id=name,
        stage=stage,
        stage_description=STAGE_DESCRIPTIONS.get(stage, "+ encoder adapters and wider decoder"),
        base_clip=clip or "unknown",
        score_head=config.score_head,
        prompt_pairs="; ".join(" / ".join(pair) for pair in config.prompt_pairs),
        num_parameters=f"{model.num_parameters():,}",
        training_data=training_data or "none recorded",
        metrics=metrics or {},
        untrained=untrained,
    )


def save_reward_model(
    model: FinPercepRewardModel,
    save_directory: str | Path,
    image_processor: FinPercepImageProcessor | None = None,
    **card_kwargs,
) -> Path:
    """`save_pretrained` of the model (safetensors) and its image processor, plus a rendered ``README.md``."""
    save_directory = Path(save_directory)
    model.save_pretrained(save_directory)
    (image_processor or FinPercepImageProcessor()).save_pretrained(save_directory)
    render_model_card(model, **card_kwargs).save(save_directory / "README.md")
    return save_directory


def push_reward_model_to_hub(
    model: FinPercepRewardModel, repo_id: str, image_processor: FinPercepImageProcessor | None = None, **card_kwargs
) -> str:
    """Push model, image processor and rendered card to ``repo_id`` in one commit (what `save_reward_model` writes,
    uploaded with `HfApi.upload_folder`); returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save_reward_model(model, folder, image_processor, repo_id=repo_id, **card_kwargs)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload FinPercep-RM")
    return str(url)


def push_stage_dirs_to_hub(output_dir: str | Path, repo_id: str, stages: list[int]) -> str:
    """Upload every ``finpercep-rm-stage{k}`` dir of a training run into ``repo_id`` as a sub-folder, and the last
    stage also at the repo root (so ``from_pretrained(repo_id)`` gives RM_N and ``subfolder=...`` any RM_k)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    output_dir = Path(output_dir)
    stage_dirs = [output_dir / f"finpercep-rm-stage{stage}" for stage in stages]
    missing = [str(path) for path in stage_dirs if not path.is_dir()]
    if missing:
        raise FileNotFoundError(f"stage checkpoints missing, nothing pushed: {missing}")
    for path in stage_dirs:
        api.upload_folder(repo_id=repo_id, folder_path=str(path), path_in_repo=path.name)
    api.upload_folder(repo_id=repo_id, folder_path=str(stage_dirs[-1]))
    return f"https://huggingface.co/{repo_id}"


__all__ = [
    "card_template_path",
    "push_reward_model_to_hub",
    "push_stage_dirs_to_hub",
    "render_model_card",
    "save_reward_model",
]
