"""The Table-1 metric suite (paper Sec. 4): a registry of image-quality metrics with their metadata.

Each registry entry is a [`FinPercepMetricSpec`]: direction (``lower_better``), ``score_range``, whether it needs
the HR reference, which weight files it needs, and a builder. [`build_metric`] checks every weight file *before*
constructing anything, so a missing file is a clear `FinPercepMissingWeightsError` (naming the file, where to put
it and where to get it), never a download. Heavy dependencies (pyiqa, the reward model) are imported lazily.

Every built metric is a [`FinPercepMetric`]: ``metric(image_sr, image_hr=None) -> (B,) float32 scores`` for
``image_sr`` / ``image_hr`` of shape (B, 3, H, W), float in [0, 1].

Where pyiqa looks for weights: its own checkpoints in ``<torch hub dir>/pyiqa``, the OpenAI CLIP backbones in
``<torch hub dir>/clip`` and torchvision backbones in ``<torch hub dir>/checkpoints`` (the torch hub dir is
``~/.cache/torch/hub`` unless ``TORCH_HOME`` says otherwise); timm backbones in the Hugging Face cache. A
``weights_dir`` replaces the torch hub dir: lay it out the same way (``weights_dir/pyiqa/...``,
``weights_dir/clip/...``, ``weights_dir/checkpoints/...``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
OPENAI_CLIP_URL = "https://openaipublic.azureedge.net/clip/models"
# PSNR of identical images is infinite; the MSE is floored so that means over a dataset stay finite (100 dB).
PSNR_MIN_MSE = 1e-10


class FinPercepMissingWeightsError(FileNotFoundError):
    """A metric's weight files are not on this machine; the message names each file and where to put it."""


@dataclass(frozen=True)
class FinPercepWeightFile:
    """One file that a metric reads when it is built.

    Either ``path`` relative to the torch hub directory (or to ``weights_dir``), or, with ``repo_id``, the file
    ``path`` of that Hugging Face repository in the local Hugging Face cache. ``option`` names the builder keyword
    that receives the resolved local path (for checkpoints whose location the backend lets us pass explicitly).
    """

    path: str
    url: str
    repo_id: str | None = None
    option: str | None = None


@dataclass(frozen=True)
class FinPercepMetricSpec:
    """Metadata of one metric and how to build it.

    ``builder(spec, weight_paths=..., weights_dir=..., device=..., rm=..., **options)`` returns a
    [`FinPercepMetric`]; ``weight_paths`` maps each ``FinPercepWeightFile.option`` to its resolved local path,
    ``weights_dir`` is the user's weights directory or None, ``rm`` a FinPercep-RM path or model (only metrics
    with ``needs_model`` use it).
    """

    name: str
    display_name: str
    lower_better: bool
    score_range: tuple[float, float]
    needs_reference: bool
    builder: Callable[..., FinPercepMetric]
    weights: tuple[FinPercepWeightFile, ...] = ()
    needs_model: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def needs_weights(self) -> bool:
        return bool(self.weights) or self.needs_model

    @property
    def label(self) -> str:
        """Column label as in the paper's tables, e.g. ``"LPIPS ↓"``."""
        return f"{self.display_name} {'↓' if self.lower_better else '↑'}"


class FinPercepMetric:
    """A built metric: ``metric(image_sr, image_hr=None) -> (B,)`` float32 scores on CPU.

    Subclasses implement `compute`; `__call__` checks the inputs against the spec (reference needed, shapes).
    """

    def __init__(self, spec: FinPercepMetricSpec, device: str | torch.device = "cpu"):
        self.spec = spec
        self.device = torch.device(device)

    def compute(self, image_sr: torch.Tensor, image_hr: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, image_sr: torch.Tensor, image_hr: torch.Tensor | None = None) -> torch.Tensor:
        if image_sr.ndim != 4 or image_sr.shape[1] != 3:
            raise ValueError(f"{self.spec.name}: image_sr must be (B, 3, H, W), got {tuple(image_sr.shape)}.")
        if self.spec.needs_reference:
            if image_hr is None:
                raise ValueError(f"{self.spec.name} is a full-reference metric: it needs image_hr.")
            if image_hr.shape != image_sr.shape:
                raise ValueError(
                    f"{self.spec.name}: image_sr {tuple(image_sr.shape)} and image_hr {tuple(image_hr.shape)} "
                    "must have the same shape."
                )
            image_hr = image_hr.to(self.device, torch.float32)
        scores = self.compute(image_sr.to(self.device, torch.float32), image_hr if self.spec.needs_reference else None)
        return scores.reshape(image_sr.shape[0]).float().cpu()


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma as used in SR evaluation (MATLAB ``rgb2ycbcr``): (B, 3, H, W) in [0, 1] -> (B, 1, H, W)
    in [16/255, 235/255]."""
    weights = image.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (16.0 + (image * weights).sum(dim=1, keepdim=True)) / 255.0


def psnr(image_sr: torch.Tensor, image_hr: torch.Tensor, y_channel: bool = False) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (peak 1): (B, 3, H, W) x2 -> (B,).

    The MSE is floored at `PSNR_MIN_MSE`, so identical images score 100 dB instead of infinity.
    """
    if y_channel:
        image_sr, image_hr = rgb_to_y(image_sr), rgb_to_y(image_hr)
    mse = (image_sr - image_hr).pow(2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp(min=PSNR_MIN_MSE))


def ssim(
    image_sr: torch.Tensor, image_hr: torch.Tensor, y_channel: bool = False, window_size: int = 11
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, peak 1), averaged
    over the valid (unpadded) window positions and the channels: (B, 3, H, W) x2 in [0, 1] -> (B,) in [-1, 1]."""
    from kornia.metrics import ssim as ssim_map

    if y_channel:
        image_sr, image_hr = rgb_to_y(image_sr), rgb_to_y(image_hr)
    if min(image_sr.shape[-2:]) < window_size:
        raise ValueError(f"ssim needs images of at least {window_size}x{window_size}, got {tuple(image_sr.shape)}.")
    return ssim_map(image_sr, image_hr, window_size, max_val=1.0, padding="valid").flatten(1).mean(dim=1)


class FinPercepReferenceMetric(FinPercepMetric):
    """Base of the full-reference pixel metrics, computed on RGB or, with ``y_channel``, on the BT.601 luma."""

    def __init__(self, spec: FinPercepMetricSpec, device: str | torch.device = "cpu", y_channel: bool = False):
        super().__init__(spec, device)
        self.y_channel = y_channel


class FinPercepPSNR(FinPercepReferenceMetric):
    def compute(self, image_sr: torch.Tensor, image_hr: torch.Tensor | None) -> torch.Tensor:
        return psnr(image_sr, image_hr, y_channel=self.y_channel)


class FinPercepSSIM(FinPercepReferenceMetric):
    def compute(self, image_sr: torch.Tensor, image_hr: torch.Tensor | None) -> torch.Tensor:
        return ssim(image_sr, image_hr, y_channel=self.y_channel)


class FinPercepPyIQAMetric(FinPercepMetric):
    """A pyiqa metric (``pip install finpercep-hf[eval]``), built offline from local weight files.

    ``torch_hub_dir`` replaces the torch hub directory during construction (see `torch_hub_dir_set_to`);
    ``pyiqa_options`` go to ``pyiqa.create_metric`` (e.g. ``pretrained_model_path``).
    """

    def __init__(
        self,
        spec: FinPercepMetricSpec,
        pyiqa_name: str,
        device: str | torch.device = "cpu",
        torch_hub_dir: str | Path | None = None,
        **pyiqa_options: Any,
    ):
        super().__init__(spec, device)
        try:
            import pyiqa
        except ImportError as error:
            raise ImportError(
                f"The metric {spec.name!r} needs pyiqa: pip install 'finpercep-hf[eval]' "
                "(or pip install pyiqa 'setuptools<82')."
            ) from error
        with torch_hub_dir_set_to(torch_hub_dir):
            self.model = pyiqa.create_metric(pyiqa_name, as_loss=False, device=self.device, **pyiqa_options)

    def compute(self, image_sr: torch.Tensor, image_hr: torch.Tensor | None) -> torch.Tensor:
        return self.model(image_sr) if image_hr is None else self.model(image_sr, image_hr)


class FinPercepRMScore(FinPercepMetric):
    """The global score of a FinPercep-RM (``global_score`` in [0, 1], higher is better)."""

    def __init__(self, spec: FinPercepMetricSpec, model: Any, device: str | torch.device = "cpu"):
        super().__init__(spec, device)
        self.model = model.to(self.device).eval()

    def compute(self, image_sr: torch.Tensor, image_hr: torch.Tensor | None) -> torch.Tensor:
        return self.model(image_sr).global_score


@contextlib.contextmanager
def torch_hub_dir_set_to(directory: str | Path | None) -> Iterator[None]:
    """Temporarily make ``directory`` the torch hub directory (no-op for None).

    Sets ``torch.hub.get_dir()`` (read by torchvision and pyiqa's CLIP loader) and, when pyiqa is imported, its
    checkpoint cache ``pyiqa.utils.download_util.DEFAULT_CACHE_DIR`` (``<hub>/pyiqa``, fixed when pyiqa is first
    imported), which pyiqa's loaders read for checkpoints we cannot pass by path (MANIQA's).
    """
    if directory is None:
        yield
        return
    download_util = sys.modules.get("pyiqa.utils.download_util")
    previous_hub = torch.hub.get_dir()
    previous_cache = getattr(download_util, "DEFAULT_CACHE_DIR", None)
    torch.hub.set_dir(str(directory))
    if download_util is not None:
        download_util.DEFAULT_CACHE_DIR = str(Path(directory) / "pyiqa")
    try:
        yield
    finally:
        torch.hub.set_dir(previous_hub)
        if download_util is not None:
            download_util.DEFAULT_CACHE_DIR = previous_cache


def _build_reference_metric(spec, weight_paths, weights_dir, device, rm, metric_class, y_channel):
    return metric_class(spec, device=device, y_channel=y_channel)


def _build_pyiqa_metric(spec, weight_paths, weights_dir, device, rm, pyiqa_name):
    options = {option: str(path) for option, path in weight_paths.items()}
    return FinPercepPyIQAMetric(spec, pyiqa_name, device=device, torch_hub_dir=weights_dir, **options)


def _build_rm_score(spec, weight_paths, weights_dir, device, rm):
    from ..models import FinPercepRewardModel

    model = FinPercepRewardModel.from_pretrained(str(rm)) if isinstance(rm, (str, Path)) else rm
    return FinPercepRMScore(spec, model, device=device)


def _pyiqa_file(name: str, option: str | None = "pretrained_model_path") -> FinPercepWeightFile:
    return FinPercepWeightFile(path=f"pyiqa/{name}", url=f"{PYIQA_WEIGHTS_URL}/{name}", option=option)


def _clip_file(name: str, sha256: str) -> FinPercepWeightFile:
    return FinPercepWeightFile(path=f"clip/{name}", url=f"{OPENAI_CLIP_URL}/{sha256}/{name}")


METRIC_REGISTRY: dict[str, FinPercepMetricSpec] = {}


def register_metric(spec: FinPercepMetricSpec) -> FinPercepMetricSpec:
    """Add ``spec`` to `METRIC_REGISTRY` (names are unique, lower case)."""
    if spec.name in METRIC_REGISTRY:
        raise ValueError(f"a metric named {spec.name!r} is already registered.")
    METRIC_REGISTRY[spec.name] = spec
    return spec


register_metric(
    FinPercepMetricSpec(
        "psnr",
        "PSNR",
        lower_better=False,
        score_range=(0.0, 100.0),
        needs_reference=True,
        builder=_build_reference_metric,
        options={"metric_class": FinPercepPSNR, "y_channel": False},
        description="PSNR in dB on RGB, peak 1.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "psnr_y",
        "PSNR-Y",
        lower_better=False,
        score_range=(0.0, 100.0),
        needs_reference=True,
        builder=_build_reference_metric,
        options={"metric_class": FinPercepPSNR, "y_channel": True},
        description="PSNR in dB on the BT.601 luma (the usual SR protocol), peak 1.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "ssim",
        "SSIM",
        lower_better=False,
        score_range=(-1.0, 1.0),
        needs_reference=True,
        builder=_build_reference_metric,
        options={"metric_class": FinPercepSSIM, "y_channel": False},
        description="SSIM (Gaussian 11x11, sigma 1.5) on RGB.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "ssim_y",
        "SSIM-Y",
        lower_better=False,
        score_range=(-1.0, 1.0),
        needs_reference=True,
        builder=_build_reference_metric,
        options={"metric_class": FinPercepSSIM, "y_channel": True},
        description="SSIM (Gaussian 11x11, sigma 1.5) on the BT.601 luma.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "lpips",
        "LPIPS",
        lower_better=True,
        score_range=(0.0, 1.0),
        needs_reference=True,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "lpips"},
        weights=(
            _pyiqa_file("LPIPS_v0.1_alex-df73285e.pth"),
            FinPercepWeightFile(
                "checkpoints/alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
            ),
        ),
        description="LPIPS v0.1 (AlexNet) through pyiqa: perceptual distance to the HR image.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "musiq",
        "MUSIQ",
        lower_better=False,
        score_range=(0.0, 100.0),
        needs_reference=False,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "musiq"},
        weights=(_pyiqa_file("musiq_koniq_ckpt-e95806b9.pth"),),
        description="MUSIQ (KonIQ-10k) through pyiqa.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "maniqa",
        "MANIQA",
        lower_better=False,
        score_range=(0.0, 1.0),
        needs_reference=False,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "maniqa"},
        weights=(
            # pyiqa's MANIQA reads an explicit checkpoint path with another key layout than its default
            # checkpoint, so this one is found through pyiqa's cache directory instead of passed by path.
            _pyiqa_file("ckpt_koniq10k.pt", option=None),
            FinPercepWeightFile(
                "model.safetensors",
                "https://huggingface.co/timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
                repo_id="timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
            ),
        ),
        description="MANIQA (KonIQ-10k) through pyiqa; its timm ViT-B/8 backbone comes from the HF cache.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "clipiqa",
        "CLIP-IQA",
        lower_better=False,
        score_range=(0.0, 1.0),
        needs_reference=False,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "clipiqa"},
        weights=(_clip_file("RN50.pt", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"),),
        description="CLIP-IQA (OpenAI CLIP RN50, antonym prompts) through pyiqa.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "liqe",
        "LIQE",
        lower_better=False,
        score_range=(1.0, 5.0),
        needs_reference=False,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "liqe"},
        weights=(
            _pyiqa_file("liqe_koniq.pt"),
            _clip_file("ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"),
        ),
        description="LIQE (KonIQ-10k, OpenAI CLIP ViT-B/32) through pyiqa.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "finpercep",
        "FinPercep",
        lower_better=False,
        score_range=(0.0, 1.0),
        needs_reference=False,
        builder=_build_rm_score,
        needs_model=True,
        description="global_score of a FinPercep-RM checkpoint (pass its directory as rm / --rm).",
    )
)

# The paper's Table 1 (Sec. 4): LPIPS for fidelity and four no-reference perceptual metrics.
PAPER_METRICS = ("lpips", "musiq", "maniqa", "clipiqa", "liqe")


def get_metric_spec(name: str) -> FinPercepMetricSpec:
    """The registered spec called ``name``; a `KeyError` listing the known names otherwise."""
    try:
        return METRIC_REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(METRIC_REGISTRY)}.") from None


def list_metrics(needs_reference: bool | None = None, needs_weights: bool | None = None) -> list[str]:
    """Names of the registered metrics, optionally filtered by their metadata."""
    return [
        spec.name
        for spec in METRIC_REGISTRY.values()
        if (needs_reference is None or spec.needs_reference == needs_reference)
        and (needs_weights is None or spec.needs_weights == needs_weights)
    ]


def resolve_weight_files(spec: FinPercepMetricSpec, weights_dir: str | Path | None = None) -> dict[str, Path]:
    """Find every weight file of ``spec`` on disk without any network access.

    Returns ``{option: path}`` for the files whose path the builder receives. Raises
    `FinPercepMissingWeightsError` naming every missing file, where it was looked for and where to get it.
    """
    from huggingface_hub import try_to_load_from_cache

    hub_dir = Path(weights_dir) if weights_dir is not None else Path(torch.hub.get_dir())
    found: dict[str, Path] = {}
    missing: list[str] = []
    for weight in spec.weights:
        if weight.repo_id is not None:
            cached = try_to_load_from_cache(weight.repo_id, weight.path)
            if isinstance(cached, str):
                path = Path(cached)
            else:
                missing.append(
                    f"  - {weight.path} of the Hugging Face repository {weight.repo_id}, not in the Hugging Face "
                    f"cache: on a machine with Hub access run `hf download {weight.repo_id} {weight.path}` and copy "
                    "the cache (HF_HUB_CACHE) here."
                )
                continue
        else:
            path = hub_dir / weight.path
            if not path.is_file():
                missing.append(f"  - {Path(weight.path).name}: expected at {path}; download it from {weight.url}")
                continue
        if weight.option is not None:
            found[weight.option] = path
    if missing:
        where = f"--weights-dir {hub_dir}" if weights_dir is not None else f"the torch hub directory {hub_dir}"
        raise FinPercepMissingWeightsError(
            f"The metric {spec.name!r} needs weight files that are not on this machine (looked in {where}; "
            "nothing is downloaded):\n" + "\n".join(missing) + "\nPut each file at the path shown, or pass "
            "--weights-dir DIR with the files laid out as DIR/pyiqa/..., DIR/clip/..., DIR/checkpoints/...."
        )
    return found


def build_metric(
    name: str,
    weights_dir: str | Path | None = None,
    rm: str | Path | Any | None = None,
    device: str | torch.device = "cpu",
) -> FinPercepMetric:
    """Build the metric called ``name`` after checking its weight files (see `resolve_weight_files`).

    Args:
        name: a key of `METRIC_REGISTRY` (`list_metrics()`).
        weights_dir: replaces the torch hub directory as the place to find pyiqa, CLIP and torchvision weights.
        rm: for metrics with ``needs_model``: a FinPercep-RM directory or a loaded `FinPercepRewardModel`.
        device: where the metric runs.
    """
    spec = get_metric_spec(name)
    if spec.needs_model and rm is None:
        raise ValueError(f"The metric {spec.name!r} needs a reward model: pass rm= (the --rm PATH option).")
    weight_paths = resolve_weight_files(spec, weights_dir)
    return spec.builder(spec, weight_paths=weight_paths, weights_dir=weights_dir, device=device, rm=rm, **spec.options)


__all__ = [
    "FinPercepMetric",
    "FinPercepMetricSpec",
    "FinPercepMissingWeightsError",
    "FinPercepPSNR",
    "FinPercepPyIQAMetric",
    "FinPercepRMScore",
    "FinPercepReferenceMetric",
    "FinPercepSSIM",
    "FinPercepWeightFile",
    "METRIC_REGISTRY",
    "PAPER_METRICS",
    "build_metric",
    "get_metric_spec",
    "list_metrics",
    "psnr",
    "register_metric",
    "resolve_weight_files",
    "rgb_to_y",
    "ssim",
    "torch_hub_dir_set_to",
]
