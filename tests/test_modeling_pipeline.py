"""The ``fine-grained-iqa`` pipeline built from a model object or a plain `save_pretrained` directory."""

import numpy as np
import pytest
import torch
from transformers import pipeline

from finpercep_hf import FinPercepImageProcessor, FinPercepPipeline
from finpercep_hf.images import FinPercepImageError


@pytest.mark.parametrize("source", ["object", "plain-dir"])
def test_pipeline_without_a_saved_image_processor(make_rm, skimage_photos, tmp_path, source):
    model = make_rm(stage=1)
    if source == "plain-dir":
        model.save_pretrained(tmp_path)
        assert not (tmp_path / "preprocessor_config.json").exists()
    pipe = pipeline("fine-grained-iqa", model=model if source == "object" else str(tmp_path))
    assert isinstance(pipe, FinPercepPipeline) and isinstance(pipe.image_processor, FinPercepImageProcessor)
    photo = skimage_photos["chelsea"].crop((0, 0, 61, 43))
    result = pipe(photo)
    with torch.no_grad():
        expected = model(FinPercepImageProcessor()(photo)["pixel_values"])
    assert result["score"] == pytest.approx(expected.global_score.item(), abs=1e-6)
    assert result["pdm"].shape == (43, 61)
    np.testing.assert_allclose(result["pdm"], expected.pdm[0, 0].numpy(), atol=1e-6)


def test_pipeline_loads_a_saved_image_processor(make_rm, tmp_path):
    make_rm(stage=1).save_pretrained(tmp_path)
    FinPercepImageProcessor(do_resize=True, shortest_edge=24).save_pretrained(tmp_path)
    pipe = pipeline("fine-grained-iqa", model=str(tmp_path))
    assert pipe.image_processor.do_resize and pipe.image_processor.shortest_edge == 24
    assert pipe(torch.rand(3, 40, 56))["pdm"].shape == (24, 34)


def test_pipeline_rejects_out_of_range_pixels(make_rm):
    pipe = pipeline("fine-grained-iqa", model=make_rm(stage=1))
    with pytest.raises(FinPercepImageError, match=r"\[0, 1\]"):
        pipe(torch.rand(3, 32, 32) * 255)
