"""The SR pool: classical upsamplers, labelled artifact generators, diffusers SR pipelines, the adapter hook."""

import pytest
import torch

from finpercep_hf.data import ARTIFACT_KINDS, AdapterSR, ClassicalUpsampler, DiffusersSR, SRPool, load_sr_model
from finpercep_hf.data.degradations import degrade
from finpercep_hf.images import pil_to_tensor

ADAPTER_SOURCE = """
import torch.nn.functional as F


class NearestSR:
    name = "my-nearest"
    artifact_kind = "blocky"

    def __call__(self, lr):
        return F.interpolate(lr, scale_factor=4, mode="nearest")
"""


@pytest.fixture(scope="module")
def lr_and_gt(skimage_photos):
    image_gt = pil_to_tensor(skimage_photos["chelsea"].crop((40, 0, 168, 96)))[None]
    return degrade(image_gt, seed=0), image_gt


@pytest.fixture(scope="module")
def tiny_sd_upscaler_dir(tmp_path_factory):
    from finpercep_hf.generators.random_init import build_sd_upscaler_pipeline

    path = tmp_path_factory.mktemp("tiny-sd-x4")
    build_sd_upscaler_pipeline("tiny", seed=0).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_ldm_sr_dir(tmp_path_factory):
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=32, in_channels=6, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
    )  # fmt: skip
    vqvae = VQModel(
        in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(8, 16, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=8,
        num_vq_embeddings=32,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-ldm-sr")
    LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler()).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "lanczos"])
def test_classical_upsamplers_are_x4_and_close_to_gt(lr_and_gt, mode):
    lr, image_gt = lr_and_gt
    model = load_sr_model(mode)
    sr = model(lr)
    assert isinstance(model, ClassicalUpsampler) and model.name == mode
    assert model.artifact_kind == "upsampled_degradation"
    assert sr.shape == (1, 3, 96, 128) and 0 <= sr.min() and sr.max() <= 1
    error = (sr - image_gt).abs().mean()
    assert error < 0.08  # bicubic from the degraded LR: about 0.037
    assert error < 0.3 * (image_gt - 0.5).abs().mean()  # far better than a flat grey "upsampler"


@pytest.mark.parametrize("kind", ARTIFACT_KINDS)
def test_artifact_generators_are_labelled_reproducible_and_differ_from_bicubic(lr_and_gt, kind):
    lr, _ = lr_and_gt
    model = load_sr_model(f"artifact:{kind}")
    assert model.name == f"artifact:{kind}" and model.artifact_kind == kind
    sr = model(lr, torch.Generator().manual_seed(1))
    assert sr.shape == (1, 3, 96, 128) and 0 <= sr.min() and sr.max() <= 1
    assert torch.equal(sr, model(lr, torch.Generator().manual_seed(1)))
    bicubic = ClassicalUpsampler("bicubic")(lr)
    assert (sr - bicubic).abs().mean() > 0.004  # the artifact is really there


def test_unknown_artifact_and_mode_are_named_in_the_error():
    with pytest.raises(ValueError, match="artifact kind"):
        load_sr_model("artifact:glitter")
    with pytest.raises(ValueError, match="mode must be one of"):
        ClassicalUpsampler("nearest")


def test_adapter_hook_loads_a_class_from_a_file(tmp_path, lr_and_gt):
    lr, _ = lr_and_gt
    (tmp_path / "my_sr.py").write_text(ADAPTER_SOURCE)
    model = load_sr_model(f"{tmp_path / 'my_sr.py'}:NearestSR")
    assert isinstance(model, AdapterSR) and model.name == "my-nearest" and model.artifact_kind == "blocky"
    sr = model(lr, torch.Generator())
    assert torch.equal(sr, torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest"))
    with pytest.raises(ValueError, match="no attribute 'Missing'"):
        AdapterSR(f"{tmp_path / 'my_sr.py'}:Missing")
    with pytest.raises(FileNotFoundError, match="nope.py"):
        AdapterSR(f"{tmp_path / 'nope.py'}:NearestSR")


def test_diffusers_sd_upscaler_by_path(tiny_sd_upscaler_dir, lr_and_gt):
    lr, _ = lr_and_gt
    model = load_sr_model(tiny_sd_upscaler_dir)
    assert isinstance(model, DiffusersSR) and model.kind == "StableDiffusionUpscalePipeline"
    model.num_inference_steps = 2
    sr = model(lr[..., :8, :8], torch.Generator().manual_seed(0))
    assert sr.shape == (1, 3, 32, 32) and 0 <= sr.min() and sr.max() <= 1
    assert torch.equal(sr, model(lr[..., :8, :8], torch.Generator().manual_seed(0)))
    assert model.name == tiny_sd_upscaler_dir and model.artifact_kind == "diffusion_sr"


def test_diffusers_ldm_super_resolution_by_path(tiny_ldm_sr_dir, lr_and_gt):
    lr, _ = lr_and_gt
    model = DiffusersSR(tiny_ldm_sr_dir, num_inference_steps=2)
    assert model.kind == "LDMSuperResolutionPipeline"
    sr = model(lr[..., :8, :8], torch.Generator().manual_seed(0))
    assert sr.shape == (1, 3, 32, 32) and 0 <= sr.min() and sr.max() <= 1


def test_pool_draws_every_member_by_weight():
    pool = SRPool(["bicubic", "lanczos", "artifact:oversharpen_halo"], weights=[1.0, 0.0, 3.0])
    generator = torch.Generator().manual_seed(0)
    names = [pool.pick(generator).name for _ in range(400)]
    assert names.count("lanczos") == 0
    assert 2.2 < names.count("artifact:oversharpen_halo") / names.count("bicubic") < 4.2
    with pytest.raises(ValueError, match="weights"):
        SRPool(["bicubic"], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        SRPool([])
