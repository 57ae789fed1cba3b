"""The pyiqa build-and-score path with weight files made in the test (random values, the layouts pyiqa reads):
``build_metric("lpips", weights_dir=...)`` finds both files, pyiqa loads them, and the score depends on them."""

import math
import socket

import pytest
import torch

from finpercep_hf.evaluation.metrics import build_metric, get_metric_spec, resolve_weight_files
from finpercep_hf.images import pil_to_tensor

pytest.importorskip("pyiqa", reason="pyiqa is not installed (pip install 'finpercep-hf[eval]')")

LPIPS_CHANNELS = (64, 192, 384, 256, 256)  # AlexNet's five feature taps, one LPIPS linear layer each


def write_lpips_weights(weights_dir, seed: int) -> dict[str, torch.Tensor]:
    """Random LPIPS files under ``weights_dir`` laid out like the torch hub cache; returns the linear layers' state.

    ``checkpoints/alexnet-owt-7be5be79.pth``: a torchvision AlexNet state dict (random conv features; the unused
    classifier as zero-stride views, so the file stays small). ``pyiqa/LPIPS_v0.1_alex-df73285e.pth``: the five
    ``lin{i}.model.1.weight`` (1, C_i, 1, 1) non-negative channel weights of pyiqa's LPIPS (dropout is model.0).
    """
    from torchvision.models import alexnet

    generator = torch.Generator().manual_seed(seed)
    backbone = {}
    for name, value in alexnet().state_dict().items():
        if name.startswith("features."):
            backbone[name] = torch.randn(value.shape, generator=generator) * (0.1 if name.endswith("weight") else 0.01)
        else:
            backbone[name] = torch.zeros(()).expand(value.shape)
    (weights_dir / "checkpoints").mkdir(exist_ok=True)
    torch.save(backbone, weights_dir / "checkpoints" / "alexnet-owt-7be5be79.pth")
    linear = {
        f"lin{i}.model.1.weight": torch.rand((1, channels, 1, 1), generator=generator)
        for i, channels in enumerate(LPIPS_CHANNELS)
    }
    (weights_dir / "pyiqa").mkdir(exist_ok=True)
    torch.save(linear, weights_dir / "pyiqa" / "LPIPS_v0.1_alex-df73285e.pth")
    return linear


def refuse_connections(*args, **kwargs):
    raise AssertionError("a network connection was attempted")


def test_lpips_builds_from_local_files_and_scores_with_their_weights(tmp_path, skimage_photos, monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", refuse_connections)
    photo = pil_to_tensor(skimage_photos["astronaut"]).unsqueeze(0)
    linear = write_lpips_weights(tmp_path, seed=0)
    options = resolve_weight_files(get_metric_spec("lpips"), tmp_path)
    assert options == {"pretrained_model_path": tmp_path / "pyiqa" / "LPIPS_v0.1_alex-df73285e.pth"}
    metric = build_metric("lpips", weights_dir=tmp_path)
    loaded = metric.model.net.state_dict()
    for name, value in linear.items():  # pyiqa loads non-strictly: check the keys really landed
        torch.testing.assert_close(loaded[name], value, rtol=0, atol=0)
    image_gt = photo[..., :64, :64]
    image_sr = torch.nn.functional.avg_pool2d(image_gt, 5, stride=1, padding=2)
    with torch.no_grad():
        first = metric(image_sr, image_gt).item()
        assert metric(image_gt, image_gt).item() == pytest.approx(0.0, abs=1e-6)  # a distance: zero to itself
    assert math.isfinite(first) and first > 0

    write_lpips_weights(tmp_path, seed=1)  # other random weights in the same files
    with torch.no_grad():
        second = build_metric("lpips", weights_dir=tmp_path)(image_sr, image_gt).item()
    assert math.isfinite(second) and second > 0 and abs(second - first) > 1e-4 * first
