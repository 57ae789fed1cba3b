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


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny UNets run faster so than on two threads contended by other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A saved random CLIPModel (ViT, hidden 32, 4 layers, patch 8) with its byte-level tokenizer."""
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def perturb_score_head(model: FinPercepRewardModel) -> FinPercepRewardModel:
    """Random weights in the score head's zero-initialised last layer, so that ``global_score != base_score``: a
    test that confuses the two then fails (a freshly grown RM_1 has equal scores by construction)."""
    if model.config.stage >= 1:
        generator = torch.Generator().manual_seed(1)
        last = model.score_head.mlp[-1]
        with torch.no_grad():
            last.weight.copy_(torch.randn(last.weight.shape, generator=generator) * 0.5)
            last.bias.fill_(0.3)
    return model


@pytest.fixture
def make_rm(tiny_clip_dir):
    """``make_rm(stage=1, perturb_head=False, **config_kwargs)`` -> a FinPercepRewardModel built from the tiny CLIP,
    seeded; ``perturb_head`` gives the zero-initialised score head random weights (then global_score != base_score).
    """

    def make(stage: int = 0, perturb_head: bool = False, **config_kwargs) -> FinPercepRewardModel:
        torch.manual_seed(0)
        model = FinPercepRewardModel.from_clip(str(tiny_clip_dir), stage=stage, **config_kwargs).eval()
        return perturb_score_head(model) if perturb_head else model

    return make


@pytest.fixture(scope="session")
def tiny_rm1_dir(tiny_clip_dir, tmp_path_factory):
    """A saved stage-1 reward model (with its image processor) built from the tiny CLIP, head perturbed."""
    from finpercep_hf.models.image_processing_finpercep import FinPercepImageProcessor

    torch.manual_seed(0)
    model = perturb_score_head(FinPercepRewardModel.from_clip(str(tiny_clip_dir), stage=1))
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


def make_fgr_rows(photos: dict, num_rows: int, size: int = 64, seed: int = 0) -> dict[str, list]:
    """FGR-shaped rows made fast without the builder: SR = the crop with strong noise, a rectangular mask,
    SYN = swap, pdm_target = normalised |SYN - GT|. Enough signal for a tiny RM to learn within a few steps."""
    rng = np.random.default_rng(seed)
    names = sorted(photos)
    columns: dict[str, list] = {key: [] for key in ("image_gt", "image_sr", "image_syn", "mask", "pdm_target")}
    columns.update(sr_model=[], artifact_kind=[], mask_type=[], source_id=[])
    for index in range(num_rows):
        photo = np.asarray(photos[names[index % len(names)]], dtype=np.float32) / 255
        top, left = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        gt = photo[top : top + size, left : left + size]
        sr = np.clip(gt + rng.normal(0, 0.25, gt.shape), 0, 1).astype(np.float32)
        mask = np.zeros((size, size), np.float32)
        h, w = rng.integers(size // 4, size // 2, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        mask[y : y + h, x : x + w] = 1
        syn = mask[..., None] * sr + (1 - mask[..., None]) * gt
        target = np.clip(np.abs(syn - gt).mean(-1) / 0.3, 0, 1).astype(np.float32)
        for key, array in (("image_gt", gt), ("image_sr", sr), ("image_syn", syn)):
            columns[key].append(Image.fromarray(np.round(array * 255).astype(np.uint8)))
        columns["mask"].append(Image.fromarray((mask * 255).astype(np.uint8)))
        columns["pdm_target"].append(Image.fromarray(target))
        columns["sr_model"].append("noise")
        columns["artifact_kind"].append("noise")
        columns["mask_type"].append("rectangle")
        columns["source_id"].append(f"skimage:{names[index % len(names)]}")
    return columns


@pytest.fixture(scope="session")
def tiny_fgr(skimage_photos):
    """A `datasets.DatasetDict` with FGR's columns: 32 train rows and 8 test rows of 64 x 64 crops."""
    import datasets

    features = datasets.Features(
        {key: datasets.Image() for key in ("image_gt", "image_sr", "image_syn", "mask", "pdm_target")}
        | {key: datasets.Value("string") for key in ("sr_model", "artifact_kind", "mask_type", "source_id")}
    )
    return datasets.DatasetDict(
        train=datasets.Dataset.from_dict(make_fgr_rows(skimage_photos, 32, seed=0), features=features),
        test=datasets.Dataset.from_dict(make_fgr_rows(skimage_photos, 8, seed=1), features=features),
    )


@pytest.fixture(scope="session")
def tiny_fgr_dir(tiny_fgr, tmp_path_factory):
    """`tiny_fgr` written as Parquet files that `datasets.load_dataset(dir)` reads."""
    path = tmp_path_factory.mktemp("tiny-fgr")
    (path / "data").mkdir()
    for split, dataset in tiny_fgr.items():
        dataset.to_parquet(str(path / "data" / f"{split}-00000-of-00001.parquet"))
    return path
