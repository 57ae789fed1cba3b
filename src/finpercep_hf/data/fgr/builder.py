"""`FGRBuilder`: FGR as a `datasets.GeneratorBasedBuilder`, regenerated locally from a build config."""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets

from .config import FGRBuildConfig
from .schema import FGR_FEATURES
from .synthesis import FGRSynthesizer


@dataclass
class FGRBuilderConfig(datasets.BuilderConfig):
    """A ``datasets.BuilderConfig`` that carries an ``FGRBuildConfig`` (default: the mini preset)."""

    build: FGRBuildConfig = field(default_factory=FGRBuildConfig.mini)


class FGRBuilder(datasets.GeneratorBasedBuilder):
    """FGR as a ``datasets.GeneratorBasedBuilder``, for local regeneration into the datasets cache::

        builder = FGRBuilder(cache_dir="./cache", build=FGRBuildConfig.mini(num_samples=64))
        builder.download_and_prepare()
        ds = builder.as_dataset("train")   # rows as in the module docstring; the scale is in ds.info.description

    It yields the same rows as ``build_fgr`` with the same config (single process; use ``build_fgr`` for resumable,
    multi-process builds and a dataset card).
    """

    BUILDER_CONFIG_CLASS = FGRBuilderConfig
    BUILDER_CONFIGS = [FGRBuilderConfig(name="mini", description="The offline FGR-mini preset.")]
    DEFAULT_CONFIG_NAME = "mini"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="FGR: fine-grained reward samples for real-world SR (FinPercep-RM, Sec. 3.3).",
            features=FGR_FEATURES,
            license=self.config.build.license,
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        synthesizer = FGRSynthesizer(self.config.build)
        scale = self.config.build.pdm_scale or synthesizer.estimate_scale()
        synthesizer.pdm.scale = scale
        self.info.description += f" pdm_scale={scale:.6g}; pdm_feature={synthesizer.pdm.feature_name}."
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"synthesizer": synthesizer})]

    def _generate_examples(self, synthesizer: FGRSynthesizer):
        for index in range(self.config.build.num_samples):
            row = synthesizer.sample(index)
            if row is not None:
                yield datasets.builder.Key(0, index), row


__all__ = [
    "FGRBuilder",
    "FGRBuilderConfig",
]
