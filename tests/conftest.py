"""Shared fixtures: tiny random models built and saved locally (nothing is downloaded) and real skimage photos."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from finpercep_hf.models import FinPercepRewardModel  # noqa: E402
from finpercep_hf.tiny_clip import save_tiny_clip  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A saved random CLIPModel (ViT, hidden 32, 4 layers, patch 8) with its byte-level tokenizer."""
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def make_rm(tiny_clip_dir):
    """``make_rm(stage=1, **config_kwargs)`` -> a FinPercepRewardModel built from the tiny CLIP, seeded."""

    def make(stage: int = 0, **config_kwargs) -> FinPercepRewardModel:
        torch.manual_seed(0)
        return FinPercepRewardModel.from_clip(str(tiny_clip_dir), stage=stage, **config_kwargs).eval()

    return make


@pytest.fixture(scope="session")
def tiny_rm1_dir(tiny_clip_dir, tmp_path_factory):
    """A saved stage-1 reward model (with its image processor) built from the tiny CLIP."""
    from finpercep_hf.models.image_processing_finpercep import FinPercepImageProcessor

    torch.manual_seed(0)
    model = FinPercepRewardModel.from_clip(str(tiny_clip_dir), stage=1)
    path = tmp_path_factory.mktemp("rm-stage1")
    model.save_pretrained(path)
    FinPercepImageProcessor().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def skimage_photos():
    """Real photos shipped with scikit-image, as RGB PIL images, cropped small to keep tests fast."""
    from skimage import data

    photos = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        array = getattr(data, name)()
        photos[name] = Image.fromarray(np.ascontiguousarray(array[:160, :200])).convert("RGB")
    return photos
