"""The FGR dataset (paper Sec. 3.3): degradation, SR pool, masks and region swap, pdm_target maps, the builder."""

from .artifacts import ARTIFACT_KINDS, ArtifactGenerator
from .degradations import DegradationConfig, degrade
from .fgr import (
    FGR_FEATURES,
    SKIMAGE_PHOTOS,
    FGRBuildConfig,
    FGRBuilder,
    FGRSynthesizer,
    build_fgr,
    push_fgr_to_hub,
)
from .lr_hr import LRHRDataset, PreferencePairDataset
from .masks import MASK_TYPES, SemanticMasker, random_mask, region_swap
from .pdm_targets import PDMTargetBuilder
from .samplers import EpochShuffleSampler, SeededDataset
from .sr_pool import AdapterSR, ClassicalUpsampler, DiffusersSR, SRModel, SRPool, load_sr_model
from .triplet_collator import IMAGE_COLUMNS, FinPercepTripletCollator

__all__ = [
    "ARTIFACT_KINDS",
    "AdapterSR",
    "ArtifactGenerator",
    "ClassicalUpsampler",
    "DegradationConfig",
    "DiffusersSR",
    "EpochShuffleSampler",
    "FGRBuildConfig",
    "FGRBuilder",
    "FGRSynthesizer",
    "FGR_FEATURES",
    "FinPercepTripletCollator",
    "IMAGE_COLUMNS",
    "LRHRDataset",
    "MASK_TYPES",
    "PDMTargetBuilder",
    "PreferencePairDataset",
    "SKIMAGE_PHOTOS",
    "SRModel",
    "SRPool",
    "SeededDataset",
    "SemanticMasker",
    "build_fgr",
    "degrade",
    "load_sr_model",
    "push_fgr_to_hub",
    "random_mask",
    "region_swap",
]
