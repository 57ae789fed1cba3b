"""Where metric weights live and how they are found offline: the torch hub layout, pyiqa's cache directory,
the Hugging Face cache; a missing file is a `FinPercepMissingWeightsError` that names it, never a download."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from .spec import (
    FinPercepMetricSpec,
    FinPercepMissingWeightsError,
    FinPercepWeightFile,
)

PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
OPENAI_CLIP_URL = "https://openaipublic.azureedge.net/clip/models"


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


def pyiqa_weight_file(name: str, option: str | None = "pretrained_model_path") -> FinPercepWeightFile:
    """A pyiqa checkpoint, looked for at ``<hub>/pyiqa/<name>``."""
    return FinPercepWeightFile(path=f"pyiqa/{name}", url=f"{PYIQA_WEIGHTS_URL}/{name}", option=option)


def clip_weight_file(name: str, sha256: str) -> FinPercepWeightFile:
    """An OpenAI CLIP backbone, looked for at ``<hub>/clip/<name>``."""
    return FinPercepWeightFile(path=f"clip/{name}", url=f"{OPENAI_CLIP_URL}/{sha256}/{name}")


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
        where = f"--weights_dir {hub_dir}" if weights_dir is not None else f"the torch hub directory {hub_dir}"
        raise FinPercepMissingWeightsError(
            f"The metric {spec.name!r} needs weight files that are not on this machine (looked in {where}; "
            "nothing is downloaded):\n" + "\n".join(missing) + "\nPut each file at the path shown, or pass "
            "--weights_dir DIR with the files laid out as DIR/pyiqa/..., DIR/clip/..., DIR/checkpoints/...."
        )
    return found


__all__ = [
    "OPENAI_CLIP_URL",
    "PYIQA_WEIGHTS_URL",
    "clip_weight_file",
    "pyiqa_weight_file",
    "resolve_weight_files",
    "torch_hub_dir_set_to",
]
