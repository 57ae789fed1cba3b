"""The entry-point layer: thin scripts that import only the package, and the argument helpers they share."""

import ast
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from transformers import HfArgumentParser

from finpercep_hf.data import FGRBuildConfig
from finpercep_hf.evaluation.probe import FinPercepProbeConfig
from finpercep_hf.scripting import argument_view, config_from_view, parse_arguments

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "training_scripts").glob("*.py")) + sorted((REPO / "benchmarks").glob("*.py"))
SCRIPT_NAMES = {path.stem for path in SCRIPTS}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.name)
def test_scripts_import_only_the_package_never_each_other(path):
    tree = ast.parse(path.read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & SCRIPT_NAMES
    assert "argparse" not in imported or path.parent.name == "benchmarks"  # benchmarks take only its formatter
    if path.parent.name == "training_scripts":
        assert len(path.read_text().splitlines()) < 80


def test_argument_view_keeps_names_help_and_defaults_and_rebuilds_the_config():
    view = argument_view(FinPercepProbeConfig)
    (values,) = HfArgumentParser(view).parse_args_into_dataclasses(
        ["--artifacts", "blur", "jpeg", "--area_fractions", "0.25", "0.1", "--max_side", "64"]
    )
    config = config_from_view(FinPercepProbeConfig, values)
    assert config.artifacts == ("blur", "jpeg") and config.area_fractions == (0.1, 0.25) and config.max_side == 64
    assert config.seed == FinPercepProbeConfig().seed
    (defaults,) = HfArgumentParser(view).parse_args_into_dataclasses([])
    assert config_from_view(FinPercepProbeConfig, defaults) == FinPercepProbeConfig()
    help_text = HfArgumentParser(view).format_help()
    assert "Fractions of the image covered by a local implant" in help_text


def test_preset_view_fills_only_the_flags_given():
    view = argument_view(FGRBuildConfig, exclude=("degradation",), defaults={"crop_size": None, "num_samples": None})
    (values,) = HfArgumentParser(view).parse_args_into_dataclasses(["--num_samples", "8"])
    config = config_from_view(FGRBuildConfig, values, factory=FGRBuildConfig.mini)
    assert config.num_samples == 8 and config.crop_size == FGRBuildConfig.mini().crop_size
    assert config.mask_types == FGRBuildConfig.mini().mask_types and isinstance(config.mask_types, tuple)
    assert "crop_size" in asdict(values) and "degradation" not in asdict(values)


def test_parse_arguments_turns_a_validation_error_into_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments((FinPercepProbeConfig,), ["--max_side", "8"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: max_side must be >= 32, batch_size >= 1 and overlay_images >= 0."


def test_quickstart_flags_are_quickstart_config_fields():
    from finpercep_hf.cli import build_parser
    from finpercep_hf.commands import quickstart
    from finpercep_hf.quickstart import QuickstartConfig
    from finpercep_hf.scripting import dataclasses_from_namespace

    namespace = build_parser().parse_args(
        ["quickstart", "--train_samples", "8", "--ccl-schedule", "0:0,0:1,1:2,2:3", "--max-steps", "3"]
    )
    args, values = dataclasses_from_namespace(namespace, quickstart.ARGUMENTS)
    config = config_from_view(QuickstartConfig, values)
    assert (
        config.train_samples == 8
        and config.ccl_schedule == "0:0,0:1,1:2,2:3"
        and config.max_steps == 3
        and str(args.out) == "runs/quickstart"
    )
    assert config.seed == QuickstartConfig().seed


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tiny_clip", "--ccl_schedule", "0:0,0:1", "--max_steps", "0"], "max_steps must be >= 1"),
        (["--tiny_clip", "--ccl_schedule", "0:0,0:1,2:2,4:3", "--max_steps", "6"], "cannot load the FGR dataset"),
    ],
)
def test_reward_model_script_answers_bad_values_with_one_line_and_exit_2(flags, message, tmp_path):
    script = REPO / "training_scripts" / "train_reward_model.py"
    command = [
        sys.executable,
        str(script),
        "--dataset",
        str(tmp_path / "no-fgr"),
        "--output_dir",
        str(tmp_path),
        *flags,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr


def test_reward_model_script_arguments_need_exactly_one_clip():
    from finpercep_hf.scripting.reward_model_training import RewardModelScriptArguments

    parser = HfArgumentParser(RewardModelScriptArguments)
    for flags in (["--tiny_clip", "--base_clip", "openai/clip-vit-base-patch16"], []):
        with pytest.raises(ValueError, match="exactly one of --base_clip"):
            parser.parse_args_into_dataclasses(["--dataset", "fgr", *flags])
    (args,) = parser.parse_args_into_dataclasses(["--dataset", "fgr", "--tiny_clip"])
    assert args.tiny_clip and args.base_clip is None and args.decoder_channels == 64
