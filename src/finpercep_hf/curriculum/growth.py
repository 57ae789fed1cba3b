"""Progressive parameter expansion of FinPercep-RM (CCL path 1, paper Sec. 3.5.1), with stock PEFT.

The *curriculum model* is built once, at its final size, from an RM_0/RM_1 checkpoint:

* the decoder and coupled head of RM_1 (the head's last layer is zero-initialised, so RM_1 == RM_0 at growth);
* for each stage ``k >= 2``: a named LoRA adapter ``"stage{k}"`` on the encoder's attention and MLP projections
  (rank ``lora_ranks[k - 2]``, PEFT's zero-initialised ``lora_B``) and one decoder refinement block whose last
  conv is zero-initialised.

Every added piece starts as the identity, so the model's function is unchanged when a stage begins. A stage
*activates* its pieces: only active parameters are updated (`drop_inactive_gradients` discards the others'
gradients before each optimizer step, which keeps DDP's set of gradient-carrying parameters fixed). The encoder's
own weights are never updated. `export_stage_model` merges the active adapters into the encoder weights and drops
inactive pieces, giving a plain RM_k that loads with `FinPercepRewardModel.from_pretrained` and needs no PEFT.

CCL modes (paper Table 4): ``"param"`` activates stage by stage; ``"weight"`` and ``"none"`` activate everything from
step 0 (``"weight"`` ramps the map/rank loss weights instead, see `loss_weight_scale`).
"""

from __future__ import annotations

import copy
import warnings

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from ..models import FinPercepConfig, FinPercepRewardModel

CCL_MODES = ("param", "weight", "none")
ENCODER_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def adapter_name(stage: int) -> str:
    return f"stage{stage}"


def _lora_layers(model: FinPercepRewardModel) -> list[LoraLayer]:
    return [module for module in model.encoder.vision_model.modules() if isinstance(module, LoraLayer)]


def build_curriculum_model(
    model: FinPercepRewardModel, final_stage: int, lora_ranks: list[int], lora_dropout: float = 0.0
) -> FinPercepRewardModel:
    """The final-size training model for stages ``1..final_stage``, initialised from RM_0 or RM_1 ``model``.

    ``lora_ranks[i]`` is the rank of stage ``i + 2``'s encoder adapter. Returns a new model (``model`` is not
    modified) whose ``config.stage`` is ``final_stage`` and whose function equals ``model``'s RM_1 function.
    """
    if final_stage < 1:
        raise ValueError(f"final_stage must be >= 1 (stage 0 is the pre-trained CLIP-IQA), got {final_stage}.")
    if len(lora_ranks) != final_stage - 1 or any(rank < 1 for rank in lora_ranks):
        raise ValueError(
            f"need one positive LoRA rank per stage 2..{final_stage} ({final_stage - 1} ranks), got {lora_ranks}."
        )
    if model.config.stage > 1 or _lora_layers(model):
        raise ValueError("build the curriculum from an RM_0 or RM_1 model (a plain checkpoint of stage 0 or 1).")
    config = FinPercepConfig.from_dict(
        {**model.config.to_dict(), "stage": final_stage, "decoder_refine_blocks": final_stage - 1}
    )
    grown = FinPercepRewardModel(config)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or (model.config.stage == 1 and any(not key.startswith("decoder.refine.") for key in missing)):
        raise RuntimeError(f"state does not fit the grown model: missing {missing}, unexpected {unexpected}.")
    for stage, rank in enumerate(lora_ranks, start=2):
        targets = getattr(grown.encoder, "lora_target_modules", ENCODER_LORA_TARGETS)
        lora = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=lora_dropout, target_modules=targets)
        with warnings.catch_warnings():  # several named adapters in one model is the point here
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(lora, grown.encoder.vision_model, adapter_name=adapter_name(stage))
    names = [adapter_name(stage) for stage in range(2, final_stage + 1)]
    for layer in _lora_layers(grown):
        layer.set_adapter(names)  # all adapters take part in the forward; zero lora_B keeps them the identity
    for name, parameter in grown.encoder.named_parameters():
        parameter.requires_grad = "lora_" in name
    return grown


def stage_parameter_names(model: FinPercepRewardModel, stage: int) -> set[str]:
    """Names of the parameters that train at ``stage`` in ``"param"`` mode (all stages up to ``stage``).

    Stage 1: decoder (without refinement blocks) and score head; stage k >= 2 adds adapter ``stage{k}`` and
    refinement block ``k - 2``. The encoder's own weights never train.
    """
    active_adapters = {adapter_name(k) for k in range(2, stage + 1)}
    names = set()
    for name, _ in model.named_parameters():
        if name.startswith("score_head.") or (name.startswith("decoder.") and not name.startswith("decoder.refine.")):
            names.add(name)
        elif name.startswith("decoder.refine."):
            if int(name.split(".")[2]) <= stage - 2:
                names.add(name)
        elif "lora_" in name and any(f".{adapter}." in name for adapter in active_adapters):
            names.add(name)
    return names


def active_parameter_names(model: FinPercepRewardModel, stage: int, ccl: str) -> set[str]:
    """Parameters updated at ``stage`` under CCL mode ``ccl`` (``"weight"``/``"none"``: every growable one)."""
    if ccl not in CCL_MODES:
        raise ValueError(f"ccl must be one of {CCL_MODES}, got {ccl!r}.")
    return stage_parameter_names(model, model.config.stage if ccl != "param" else stage)


def drop_inactive_gradients(model: nn.Module, active: set[str]) -> None:
    """Set ``.grad = None`` on every parameter not in ``active``, so the optimizer leaves it untouched."""
    for name, parameter in model.named_parameters():
        if name not in active:
            parameter.grad = None


def loss_weight_scale(stage: int, first_stage: int, final_stage: int, ccl: str) -> float:
    """Factor on ``lambda_map`` and ``lambda_rank`` at ``stage``: a linear ramp to 1 in ``"weight"`` mode, else 1."""
    if ccl != "weight" or final_stage == first_stage:
        return 1.0
    return (stage - first_stage + 1) / (final_stage - first_stage + 1)


@torch.no_grad()
def export_stage_model(model: FinPercepRewardModel, stage: int, ccl: str = "param") -> FinPercepRewardModel:
    """A plain RM_``stage`` (merged adapters, no PEFT) with the same function as ``model`` at that stage.

    In ``"param"`` mode only the pieces of stages ``<= stage`` are kept (later ones are still the identity); in the
    other modes everything is kept. ``stage=0`` gives the encoder alone (RM_0, CLIP-IQA).
    """
    keep_all = ccl != "param"
    kept_stage = model.config.stage if keep_all else stage
    merged = copy.deepcopy(model).float()
    merged_adapters = [adapter_name(k) for k in range(2, kept_stage + 1)]
    for parent in list(merged.encoder.vision_model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                present = [name for name in merged_adapters if name in child.lora_A]
                if present:
                    child.merge(adapter_names=present)
                setattr(parent, child_name, child.get_base_layer())
    config_dict = {**model.config.to_dict(), "stage": stage}
    config_dict["decoder_refine_blocks"] = max(kept_stage - 1, 0) if stage >= 1 else 0
    plain = FinPercepRewardModel(FinPercepConfig.from_dict(config_dict))
    state = {key: value for key, value in merged.state_dict().items() if key in plain.state_dict()}
    plain.load_state_dict(state, strict=True)
    return plain.to(next(model.parameters()).dtype).eval()


__all__ = [
    "CCL_MODES",
    "active_parameter_names",
    "adapter_name",
    "build_curriculum_model",
    "drop_inactive_gradients",
    "export_stage_model",
    "loss_weight_scale",
    "stage_parameter_names",
]
