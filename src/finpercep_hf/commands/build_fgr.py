"""``finpercep build-fgr``: build an FGR dataset (Parquet shards + dataset card), optionally push it to the Hub.

Examples::

    finpercep build-fgr --preset mini --out ./fgr-mini          # offline: skimage photos, about a minute on 2 cores
    finpercep build-fgr --images ./photos --sr_models stabilityai/stable-diffusion-x4-upscaler \\
        ./my_seesr_adapter.py:SeeSR --dino facebook/dinov3-vitb16-pretrain-lvd1689m \\
        --sam facebook/sam-vit-base --num_samples 30000 --out ./fgr-30k --push_to_hub --hub_model_id org/fgr-30k
    accelerate launch --num_processes 4 -m finpercep_hf.cli build-fgr ...   # rank r builds shards r, r+4, ...

Every `FGRBuildConfig` field is a flag; a flag that is not given takes the preset's value. Re-running the same
command on the same ``--out`` resumes at the first missing shard. Exit codes: 0 built; 1 a source photo, SR model or
the Hub upload failed; 2 bad options or config values; 3 ``--out`` cannot be written.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..data import FGRBuildConfig
from ..scripting import EXIT_BAD_INPUT, EXIT_LOAD_ERROR, EXIT_OK, argument_view, config_from_view
from .outputs import check_output_dir, output_errors_exit

NAME = "build-fgr"
HELP = "Build an FGR dataset: degradation -> SR pool -> region swap -> pdm_target, as Parquet + dataset card."
DESCRIPTION = __doc__.split("\n\n")[0]
PRESETS = ("mini", "full")


def _preset_notes() -> dict[str, str]:
    """``(full: X; mini: Y)`` for every field, the defaults of both presets."""
    full, mini = FGRBuildConfig().to_dict(), FGRBuildConfig.mini().to_dict()
    return {name: f"(full: {full[name]}; mini: {mini[name]})" for name in full if name != "degradation"}


@dataclass
class BuildFGRArguments:
    out: Path = field(metadata={"help": "Output directory (resumes if it holds a build)."})
    preset: str = field(
        default="full",
        metadata={
            "help": "'mini': the offline FGR-mini defaults (skimage photos, 160 px, 320 samples, classical "
            "upsamplers and labelled artifact generators); 'full': the paper-scale defaults (512 px, 30000 "
            "samples). Flags override.",
            "choices": PRESETS,
        },
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the finished build to --hub_model_id."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Dataset repo id for --push_to_hub."})
    private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    num_threads: int = field(default=1, metadata={"help": "torch threads per process."})
    progress: bool = field(default=True, metadata={"help": "Show the progress bar (--no_progress hides it)."})

    def __post_init__(self):
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (the dataset repo id).")


ConfigArguments = argument_view(
    FGRBuildConfig,
    exclude=("degradation",),
    defaults={item.name: None for item in dataclasses.fields(FGRBuildConfig)},
    help_notes=_preset_notes(),
)
ARGUMENTS = (BuildFGRArguments, ConfigArguments)


def config_from_args(args: BuildFGRArguments, config_values) -> FGRBuildConfig:
    """The ``FGRBuildConfig`` of the preset, every flag that was given overriding it."""
    values = dataclasses.asdict(config_values)
    if values["sam"] and values["mask_types"] is None:
        values["mask_types"] = ["rectangle", "stroke", "semantic"]
    return config_from_view(FGRBuildConfig, values, factory=FGRBuildConfig.mini if args.preset == "mini" else None)


def run(args: BuildFGRArguments, config_values) -> int:
    from accelerate import PartialState

    from ..data import build_fgr, push_fgr_to_hub
    from ..images import FinPercepImageError

    try:
        config = config_from_args(args, config_values)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with output_errors_exit(args.out):
        check_output_dir(args.out)
    state = PartialState()
    try:
        with output_errors_exit(args.out):
            path = build_fgr(
                config,
                args.out,
                process_index=state.process_index,
                num_processes=state.num_processes,
                progress=args.progress,
                num_threads=args.num_threads,
            )
    except (ValueError, FileNotFoundError, FinPercepImageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOAD_ERROR
    if state.is_main_process:
        print(f"FGR dataset written to {path} (load it with datasets.load_dataset({str(path)!r}))")
        if args.push_to_hub:
            print(f"pushed to {push_fgr_to_hub(path, args.hub_model_id, private=args.private)}")
    return EXIT_OK


__all__ = ["ARGUMENTS", "DESCRIPTION", "HELP", "NAME", "BuildFGRArguments", "config_from_args", "run"]
