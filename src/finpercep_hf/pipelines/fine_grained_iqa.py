"""`FinPercepPipeline`, task ``fine-grained-iqa``: images -> ``{"score", "base_score", "pdm"}`` per image.

```python
>>> from transformers import pipeline
>>> import finpercep_hf  # registers the task
>>> pipe = pipeline("fine-grained-iqa", model="finpercep-rm-stage1")
>>> pipe(["a.png", pil_image])
[{"score": 0.71, "base_score": 0.69, "pdm": array(H, W) float32 in [0, 1]}, ...]
```
Images are scored at their own resolution, one per forward (they may differ in size). ``model`` may also be a
[`FinPercepRewardModel`] object or a directory without ``preprocessor_config.json`` (the default image processor is
used). The image processor validates the pixels (finite, in [0, 1]), so a compiled model needs no check of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import Pipeline

from ..models.image_processing_finpercep import FinPercepImageProcessor
from ..models.modeling_finpercep import FinPercepOutput


def output_to_records(output: FinPercepOutput, return_pdm: bool = True) -> list[dict[str, Any]]:
    """A batched model output -> one JSON-friendly dict per image (``pdm`` is an (H, W) float32 array or None)."""
    records = []
    for index in range(len(output.global_score)):
        record: dict[str, Any] = {
            "score": float(output.global_score[index]),
            "base_score": float(output.base_score[index]),
        }
        if return_pdm:
            pdm = output.pdm
            record["pdm"] = None if pdm is None else pdm[index, 0].detach().float().cpu().numpy().astype(np.float32)
        records.append(record)
    return records


class FinPercepPipeline(Pipeline):
    """Scores images with a FinPercep reward model; see the module docstring."""

    _load_processor = False
    # None: load a saved image processor when there is one, else (a model object, a plain `save_pretrained`
    # directory) fall back to the default `FinPercepImageProcessor`, whose settings are all defaults.
    _load_image_processor = None
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            self.image_processor = FinPercepImageProcessor()

    def _sanitize_parameters(self, return_pdm: bool | None = None, **kwargs):
        postprocess_params = {} if return_pdm is None else {"return_pdm": return_pdm}
        return {}, {}, postprocess_params

    def preprocess(self, image) -> dict[str, torch.Tensor]:
        return self.image_processor(image, return_tensors="pt")

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> FinPercepOutput:
        pixel_values = model_inputs["pixel_values"].to(self.device, self.model.dtype)
        return self.model(pixel_values=pixel_values)

    def postprocess(self, model_outputs: FinPercepOutput, return_pdm: bool = True) -> dict[str, Any]:
        return output_to_records(model_outputs, return_pdm=return_pdm)[0]


__all__ = ["FinPercepPipeline", "output_to_records"]
