"""Metric registry: PSNR/SSIM against known values and skimage, metadata, missing-weight errors, pyiqa metrics
when their weights exist locally, and the FinPercep-RM score."""

import math
import os
import socket

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from finpercep_hf.evaluation.metrics import (
    METRIC_REGISTRY,
    PAPER_METRICS,
    FinPercepMissingWeightsError,
    FinPercepPyIQAMetric,
    build_metric,
    get_metric_spec,
    list_metrics,
    register_metric,
    resolve_weight_files,
    torch_hub_dir_set_to,
)
from finpercep_hf.images import pil_to_tensor
from finpercep_hf.models import FinPercepRewardModel

# A directory laid out like the torch hub cache with real pyiqa/CLIP/torchvision weights enables the pyiqa tests.
IQA_WEIGHTS_DIR = os.environ.get("FINPERCEP_IQA_WEIGHTS")


@pytest.fixture
def photo(skimage_photos):
    return pil_to_tensor(skimage_photos["astronaut"]).unsqueeze(0)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_psnr_known_values():
    torch.manual_seed(0)
    image_gt = torch.rand(2, 3, 24, 24) * 0.8
    image_sr = image_gt + 0.1  # MSE 0.01 on every channel -> 20 dB
    assert build_metric("psnr")(image_sr, image_gt).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    # The luma of a uniform +0.1 shift moves by 0.1 * (65.481 + 128.553 + 24.966) / 255 = 0.1 * 219 / 255.
    expected_y = -20 * math.log10(0.1 * 219 / 255)
    assert build_metric("psnr_y")(image_sr, image_gt).tolist() == pytest.approx([expected_y] * 2, abs=1e-4)
    assert build_metric("psnr")(image_gt, image_gt).tolist() == pytest.approx([100.0, 100.0])


def test_ssim_matches_skimage_reference_on_a_real_photo(photo):
    generator = torch.Generator().manual_seed(0)
    noisy = (photo + 0.08 * torch.randn(photo.shape, generator=generator)).clamp(0, 1)
    ours = build_metric("ssim")(noisy, photo).item()
    reference = structural_similarity(
        noisy[0].permute(1, 2, 0).numpy().astype(np.float64),
        photo[0].permute(1, 2, 0).numpy().astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )
    assert ours == pytest.approx(reference, abs=2e-3)
    assert 0.2 < ours < 0.9
    assert build_metric("ssim")(photo, photo).item() == pytest.approx(1.0, abs=1e-5)
    assert build_metric("ssim_y")(noisy, photo).item() > ours  # luma averages the channels' noise


def test_reference_metrics_check_their_inputs(photo):
    with pytest.raises(ValueError, match="psnr is a full-reference metric"):
        build_metric("psnr")(photo)
    with pytest.raises(ValueError, match="same shape"):
        build_metric("ssim")(photo, photo[..., :-1])
    with pytest.raises(ValueError, match=r"image_sr must be \(B, 3, H, W\)"):
        build_metric("psnr")(photo[0], photo[0])


def test_registry_metadata_and_lookup():
    lpips, musiq, liqe = get_metric_spec("LPIPS"), get_metric_spec("musiq"), get_metric_spec("liqe")
    assert (lpips.lower_better, lpips.needs_reference, lpips.needs_weights, lpips.label) == (
        True,
        True,
        True,
        "LPIPS ↓",
    )
    assert (musiq.lower_better, musiq.needs_reference, musiq.score_range) == (False, False, (0.0, 100.0))
    assert liqe.score_range == (1.0, 5.0)
    assert get_metric_spec("finpercep").needs_weights and get_metric_spec("finpercep").needs_model
    assert set(PAPER_METRICS) <= set(METRIC_REGISTRY)
    assert list_metrics(needs_weights=False) == ["psnr", "psnr_y", "ssim", "ssim_y"]
    assert "lpips" in list_metrics(needs_reference=True) and "lpips" not in list_metrics(needs_reference=False)
    with pytest.raises(KeyError, match="unknown metric 'fid'; known metrics: psnr"):
        get_metric_spec("fid")
    with pytest.raises(ValueError, match="already registered"):
        register_metric(lpips)


@pytest.mark.parametrize("name", PAPER_METRICS)
def test_missing_weights_fail_with_the_file_and_where_to_put_it(name, tmp_path, no_network):
    spec = get_metric_spec(name)
    with pytest.raises(FinPercepMissingWeightsError) as raised:
        build_metric(name, weights_dir=tmp_path)
    message = str(raised.value)
    assert f"metric {name!r}" in message and "nothing is downloaded" in message
    for weight in spec.weights:
        if weight.repo_id is None:
            assert str(tmp_path / weight.path) in message and weight.url in message
        else:
            assert weight.repo_id in message and "Hugging Face cache" in message


def test_missing_weights_lists_only_the_absent_files(tmp_path, no_network):
    (tmp_path / "pyiqa").mkdir()
    (tmp_path / "pyiqa" / "liqe_koniq.pt").write_bytes(b"placeholder")
    with pytest.raises(FinPercepMissingWeightsError) as raised:
        build_metric("liqe", weights_dir=tmp_path)
    assert "ViT-B-32.pt" in str(raised.value) and "liqe_koniq.pt" not in str(raised.value)
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "ViT-B-32.pt").write_bytes(b"placeholder")
    assert resolve_weight_files(get_metric_spec("liqe"), tmp_path) == {
        "pretrained_model_path": tmp_path / "pyiqa" / "liqe_koniq.pt"
    }


def test_pyiqa_wrapper_agrees_with_our_psnr(photo):
    pytest.importorskip("pyiqa", reason="pyiqa is not installed (pip install 'finpercep-hf[eval]')")
    degraded = (photo * 0.9 + 0.05).clamp(0, 1)
    wrapped = FinPercepPyIQAMetric(get_metric_spec("psnr"), "psnr")  # pyiqa's PSNR needs no weights
    assert wrapped(degraded, photo).item() == pytest.approx(build_metric("psnr")(degraded, photo).item(), abs=1e-3)


def test_weights_dir_becomes_the_torch_hub_and_pyiqa_cache_while_building(tmp_path):
    pytest.importorskip("pyiqa", reason="pyiqa is not installed (pip install 'finpercep-hf[eval]')")
    from pyiqa.utils import download_util

    hub_before, cache_before = torch.hub.get_dir(), download_util.DEFAULT_CACHE_DIR
    with torch_hub_dir_set_to(tmp_path):
        assert torch.hub.get_dir() == str(tmp_path)
        assert download_util.DEFAULT_CACHE_DIR == str(tmp_path / "pyiqa")
    assert (torch.hub.get_dir(), download_util.DEFAULT_CACHE_DIR) == (hub_before, cache_before)


@pytest.mark.parametrize("name", PAPER_METRICS)
def test_pyiqa_metric_scores_when_its_weights_exist(name, photo):
    pytest.importorskip("pyiqa", reason="pyiqa is not installed (pip install 'finpercep-hf[eval]')")
    spec = get_metric_spec(name)
    try:
        resolve_weight_files(spec, IQA_WEIGHTS_DIR)
    except FinPercepMissingWeightsError as error:
        pytest.skip(f"{name} weights are absent (set FINPERCEP_IQA_WEIGHTS to a weights dir): {error}")
    metric = build_metric(name, weights_dir=IQA_WEIGHTS_DIR)
    blurred = torch.nn.functional.avg_pool2d(photo, 5, stride=1, padding=2)
    clean, degraded = metric(photo, photo).item(), metric(blurred, photo).item()
    low, high = spec.score_range
    assert low - 1e-3 <= clean <= high + 1e-3 and low - 1e-3 <= degraded <= high + 1e-3
    assert (clean < degraded) if spec.lower_better else (clean > degraded)


def test_finpercep_metric_is_the_rm_global_score(tiny_rm1_dir, photo):
    metric = build_metric("finpercep", rm=tiny_rm1_dir)
    image = photo[..., :64, :64]
    torch.manual_seed(0)
    model = FinPercepRewardModel.from_pretrained(tiny_rm1_dir).eval()
    with torch.no_grad():
        expected = model(image).global_score
    assert torch.allclose(metric(image), expected)
    with pytest.raises(ValueError, match="needs a reward model"):
        build_metric("finpercep")
