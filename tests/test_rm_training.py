import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback, pipeline

from finpercep_hf import FinPercepRewardModel
from finpercep_hf.curriculum import RewardModelGrowthCallback, build_curriculum_model
from finpercep_hf.curriculum.growth import drop_inactive_gradients, export_stage_model, stage_parameter_names
from finpercep_hf.trainers.reward_model import FinPercepTrainingArguments, RewardModelTrainer

REPO = Path(__file__).resolve().parents[1]


def training_args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path),
        ccl_schedule="0:0,0:1,3:2,6:3",
        max_steps=9,
        lora_ranks="2,4",
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        crop_size=48,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        data_seed=0,
    )
    values.update(overrides)
    return FinPercepTrainingArguments(**values)


class Snapshots(TrainerCallback):
    """Copies of all parameters at every step begin, to see which ones each stage updated."""

    def __init__(self):
        self.at_step = {}

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.at_step[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.at_step[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before, after):
    return {name for name in before if not torch.equal(before[name], after[name])}


def run_training(make_rm, tiny_fgr, args, extra_callbacks=(), resume=None):
    rm0 = make_rm(stage=0)
    torch.manual_seed(0)
    model = build_curriculum_model(rm0, args.final_stage, args.lora_rank_list)
    growth = RewardModelGrowthCallback(args.schedule, ccl=args.ccl)
    trainer = RewardModelTrainer(
        model, args=args, train_dataset=tiny_fgr["train"], eval_dataset=tiny_fgr["test"], anchor_model=rm0,
        callbacks=[growth, *extra_callbacks],
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    return trainer, rm0


def test_training_args_validation(tmp_path):
    with pytest.raises(ValueError, match="stage 0"):
        training_args(tmp_path, ccl_schedule="0:0,5:1,8:2,11:3", max_steps=14)
    with pytest.raises(ValueError, match="lora_ranks"):
        training_args(tmp_path, lora_ranks="2")
    with pytest.raises(ValueError, match="ccl"):
        training_args(tmp_path, ccl="both")
    args = training_args(tmp_path)
    assert args.schedule.start_steps == [0, 0, 3, 6] and args.schedule.stage_at(0).stage == 1 and args.final_stage == 3


@pytest.mark.parametrize("ccl", ["param", "weight", "none"])
def test_stagewise_trainable_sets_growth_and_stage_checkpoints(make_rm, tiny_fgr, tmp_path, ccl):
    args = training_args(tmp_path, ccl=ccl)
    snapshots = Snapshots()
    trainer, rm0 = run_training(make_rm, tiny_fgr, args, [snapshots])
    model = trainer.model
    lora = {n for n in snapshots.at_step[0] if "lora_" in n}
    encoder_base = {n for n in snapshots.at_step[0] if n.startswith("encoder.") and "lora_" not in n}
    stage1, stage2 = (
        changed(snapshots.at_step[0], snapshots.at_step[3]),
        changed(snapshots.at_step[3], snapshots.at_step[6]),
    )
    assert not (stage1 | stage2) & encoder_base  # the encoder's own weights never train
    if ccl == "param":
        assert stage1 <= stage_parameter_names(model, 1) and not stage1 & lora  # frozen encoder at stage 1
        assert any(n.startswith("decoder.") for n in stage1) and any(n.startswith("score_head.") for n in stage1)
        assert {n for n in stage2 if "lora_B" in n} and all(".stage2." in n for n in stage2 & lora)
        assert not any(n.startswith("decoder.refine.1.") for n in stage2)
    else:  # full model from step 0
        assert any(".stage3." in n and "lora_B" in n for n in stage1)
        assert any(n.startswith("decoder.refine.1.") for n in stage1)

    pixel_values = tiny_fgr["test"].with_format("torch")[:2]["image_syn"].float() / 255
    for stage in range(4):
        stage_dir = tmp_path / f"finpercep-rm-stage{stage}"
        assert (stage_dir / "model.safetensors").is_file() and (stage_dir / "README.md").is_file()
        loaded = FinPercepRewardModel.from_pretrained(stage_dir).eval()
        assert loaded.config.stage == stage and (loaded.decoder is None) == (stage == 0)
        assert not any("lora" in name for name, _ in loaded.named_parameters())  # merged, no PEFT needed
        if stage >= 1:
            assert "ordering_accuracy" in (stage_dir / "README.md").read_text()  # eval metrics in the card
    with torch.no_grad():  # the last stage's export reproduces the training model exactly
        final = FinPercepRewardModel.from_pretrained(tmp_path / "finpercep-rm-stage3").eval()(pixel_values)
        live = model.eval()(pixel_values)
        stage0 = FinPercepRewardModel.from_pretrained(tmp_path / "finpercep-rm-stage0").eval()(pixel_values)
    torch.testing.assert_close(final.global_score, live.global_score, atol=1e-5, rtol=0)
    torch.testing.assert_close(final.pdm, live.pdm, atol=1e-5, rtol=0)
    torch.testing.assert_close(stage0.global_score, rm0(pixel_values).base_score.detach(), atol=1e-6, rtol=0)


def test_growth_is_function_preserving_at_each_transition(make_rm):
    torch.manual_seed(0)
    model = build_curriculum_model(make_rm(stage=0), 3, [2, 4])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    pixel_values = torch.rand(2, 3, 40, 40)
    rm0_score = make_rm(stage=0)(pixel_values).base_score.detach()
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).global_score, rm0_score, atol=1e-6, rtol=0)  # RM_0 -> RM_1
    for stage in (1, 2):
        for _ in range(2):  # train this stage
            optimizer.zero_grad()
            out = model(pixel_values)
            (out.pdm.mean() - out.global_score.mean()).backward()
            drop_inactive_gradients(model, stage_parameter_names(model, stage))
            optimizer.step()
        with torch.no_grad():
            before = export_stage_model(model, stage)(pixel_values)  # RM_k at the end of its stage
            after = export_stage_model(model, stage + 1)(pixel_values)  # RM_k+1 at the moment of growth
        torch.testing.assert_close(after.global_score, before.global_score, atol=1e-6, rtol=0)
        torch.testing.assert_close(after.pdm, before.pdm, atol=1e-6, rtol=0)
        assert not torch.allclose(before.global_score, rm0_score)  # the stage did train


def test_training_improves_ordering_and_localisation(make_rm, tiny_fgr, tmp_path):
    args = training_args(
        tmp_path, ccl_schedule="0:0,0:1,60:2", max_steps=100, lora_ranks="4", crop_size=64, learning_rate=3e-3
    )
    torch.manual_seed(0)
    rm0 = make_rm(stage=0)
    model = build_curriculum_model(rm0, args.final_stage, args.lora_rank_list)
    trainer = RewardModelTrainer(
        model, args=args, train_dataset=tiny_fgr["train"], eval_dataset=tiny_fgr["test"], anchor_model=rm0,
        callbacks=[RewardModelGrowthCallback(args.schedule)],
    )  # fmt: skip
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_pdm_auroc"] >= before["eval_pdm_auroc"] + 0.2, (before, after)
    assert after["eval_ordering_accuracy"] >= before["eval_ordering_accuracy"] + 0.125, (before, after)
    assert after["eval_pdm_l1"] < before["eval_pdm_l1"]


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


class RecordStart(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.step = state.global_step
        self.weights = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}


def test_resume_mid_stage_continues_the_same_stage_and_step(make_rm, tiny_fgr, tmp_path):
    args = training_args(tmp_path, save_strategy="steps", save_steps=2)
    cut, _ = run_training(make_rm, tiny_fgr, args, [StopAt(4)])
    assert (tmp_path / "checkpoint-4").is_dir() and not (tmp_path / "finpercep-rm-stage2").exists()
    assert (tmp_path / "finpercep-rm-stage1").is_dir()  # stage 1 ended at step 3, before the interruption
    interrupted = {n: p.detach().clone() for n, p in cut.model.named_parameters() if "lora_B" in n}
    start = RecordStart()
    resumed, _ = run_training(make_rm, tiny_fgr, args, [start], resume=str(tmp_path / "checkpoint-4"))
    assert start.step == 4 and resumed.state.global_step == 9
    for name, value in interrupted.items():  # stage-2 adapters come back as trained, not re-initialised
        torch.testing.assert_close(start.weights[name], value, atol=0, rtol=0, msg=name)
    assert any(value.abs().sum() > 0 for name, value in interrupted.items() if ".stage2." in name)
    growth = next(cb for cb in resumed.callback_handler.callbacks if isinstance(cb, RewardModelGrowthCallback))
    assert growth.current_stage == 3 and sorted(growth.exported_stages) == [0, 1, 2, 3]
    for stage in range(4):
        assert (tmp_path / f"finpercep-rm-stage{stage}" / "model.safetensors").is_file()


def test_stage_dir_loads_in_pipeline(make_rm, tiny_fgr, tmp_path, skimage_photos):
    run_training(make_rm, tiny_fgr, training_args(tmp_path, ccl_schedule="0:0,0:1", max_steps=2, lora_ranks=""))
    pipe = pipeline("fine-grained-iqa", model=str(tmp_path / "finpercep-rm-stage1"))
    result = pipe(skimage_photos["coffee"])
    assert result["pdm"].shape == (160, 200) and 0 <= result["score"] <= 1


def test_train_script_two_processes(tiny_fgr_dir, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
        str(REPO / "training_scripts" / "train_reward_model.py"), "--tiny_clip", "--dataset", str(tiny_fgr_dir),
        "--ccl_schedule", "0:0,0:1,2:2", "--max_steps", "4", "--lora_ranks", "2", "--output_dir", str(tmp_path),
        "--per_device_train_batch_size", "2", "--crop_size", "48", "--save_steps", "2", "--decoder_channels", "16",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in range(3):
        assert (tmp_path / f"finpercep-rm-stage{stage}" / "model.safetensors").is_file()
    assert (tmp_path / "checkpoint-4" / "trainer_state.json").is_file()
    callback_state = json.loads((tmp_path / "checkpoint-4" / "callback_state.json").read_text())
    assert {0, 1} <= set(callback_state["RewardModelGrowthCallback"]["exported_stages"])
    # resume from 'latest' with a longer schedule continues at step 4 and writes nothing twice
    command[command.index("--max_steps") + 1] = "6"
    result = subprocess.run(command + ["--resume_from_checkpoint", "latest"], capture_output=True, text=True,
                            timeout=600, env=env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "checkpoint-6").is_dir()
