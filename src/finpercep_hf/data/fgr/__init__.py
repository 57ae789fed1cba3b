"""The FGR dataset (paper Sec. 3.3): building, storing and describing it.

Each sample runs the pipeline of the paper's Fig. 3 on one random crop of a high-quality photo::

    image_gt --degrade (Real-ESRGAN, seeded)--> LR --SR model from the pool--> image_sr
    image_syn = mask * image_sr + (1 - mask) * image_gt          (mask: rectangle | stroke | SAM segment)
    pdm_target = clip((alpha * |SYN - GT| + (1 - alpha) * Diff_feat) / scale, 0, 1)

Row schema (``FGR_FEATURES``; ``datasets.load_dataset(output_dir)["train"][i]``):

======================  ======================================  =======================================================
column                  type                                    meaning
======================  ======================================  =======================================================
``image_gt``            Image, RGB, (S, S)                      the clean crop (S = ``crop_size``)
``image_sr``            Image, RGB, (S, S)                      the SR model's output for the degraded crop
``image_syn``           Image, RGB, (S, S)                      ``mask * image_sr + (1 - mask) * image_gt``
``mask``                Image, mode L, (S, S), {0, 255}         the swapped region
``pdm_target``          Image, mode F, (S, S), float32 [0, 1]   the ground-truth Perceptual Degradation Map
``sr_model``            string                                  SR model name (``bicubic``, ``artifact:<kind>``, a
                                                                diffusers id/path, an adapter name)
``artifact_kind``       string                                  the defect ``image_sr`` carries:
                                                                ``upsampled_degradation``, ``diffusion_sr``, one of
                                                                ``ARTIFACT_KINDS`` or an adapter's label
``mask_type``           string                                  ``rectangle``, ``stroke`` or ``semantic``
``mask_area``           float32                                 area ratio of ``mask``
``degradation_seed``    int64                                   seed of ``degrade`` for this sample
``source_id``           string                                  the photo (a path, or ``skimage:<name>``)
``crop_box``            int32 x 4                               (left, top, right, bottom) in the source resized by
                                                                ``source_scale``
``source_scale``        float32                                 resize factor applied to the source before cropping
``sample_index``        int64                                   index of the sample in the build (its seed)
======================  ======================================  =======================================================

On disk: ``data/train-XXXXX-of-YYYYY.parquet`` (one file per shard, written to a temporary name and renamed, so a
shard either exists complete or not at all), ``fgr_build.json`` (the build config and the normalisation scale) and
``README.md`` (the dataset card, whose YAML ``configs`` lets ``load_dataset(output_dir)`` work with no script).

``datasets`` caches a local folder's rows by the folder's name and the card's ``dataset_info`` (which records the
row count and Parquet bytes), not by the files' contents: after rebuilding a folder in place with another config,
load it once with ``download_mode="force_redownload"`` (or build into a new folder name).

Python entry points: ``build_fgr(FGRBuildConfig(...), output_dir)`` (``FGRBuildConfig.mini()`` for the offline
preset), ``FGRSynthesizer`` for single samples, and ``FGRBuilder``, a ``datasets.GeneratorBasedBuilder``.
"""

from .builder import FGRBuilder, FGRBuilderConfig
from .card import push_fgr_to_hub, render_dataset_card
from .config import FGRBuildConfig
from .schema import FGR_FEATURES, MINI_SR_MODELS, SKIMAGE_PHOTOS
from .synthesis import FGRSynthesizer, sample_seed
from .writer import build_fgr

__all__ = [
    "FGRBuilder",
    "FGRBuilderConfig",
    "FGR_FEATURES",
    "FGRBuildConfig",
    "FGRSynthesizer",
    "MINI_SR_MODELS",
    "SKIMAGE_PHOTOS",
    "build_fgr",
    "push_fgr_to_hub",
    "render_dataset_card",
    "sample_seed",
]
