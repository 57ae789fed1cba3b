"""Diffusion-DPO: the losses against hand-computed values, pair forming, and the DPO trainer on a tiny generator."""

import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from finpercep_hf.data import LRHRDataset, PreferencePairDataset
from finpercep_hf.generators import SDUpscalerGenerator, build_sd_upscaler_pipeline, save_tiny_sd_upscaler
from finpercep_hf.images import pil_to_tensor, tensor_to_pil
from finpercep_hf.trainers import DiffusionDPOConfig, DiffusionDPOTrainer
from finpercep_hf.trainers.preference import diffusion_dpo_loss, form_preference_pairs
from rl_helpers import brightness, launch

pytestmark = pytest.mark.usefixtures("one_thread")

# Two pairs. logits = (ref_w - ref_l) - (model_w - model_l) = (0 - (0.1 - 0.3), 0 - (0.2 - 0.1)) = (0.2, -0.1)
MODEL_W, MODEL_L = torch.tensor([0.10, 0.20]), torch.tensor([0.30, 0.10])
REF_W, REF_L = torch.tensor([0.20, 0.20]), torch.tensor([0.20, 0.20])
BETA = 2.0


@pytest.mark.parametrize(
    "loss_type, expected",
    [
        # -logsigmoid(x) = log(1 + exp(-x)) at beta * logits = (0.4, -0.2)
        ("sigmoid", [math.log1p(math.exp(-0.4)), math.log1p(math.exp(0.2))]),
        # relu(1 - beta * logits)
        ("hinge", [0.6, 1.2]),
        # (logits - 1 / (2 * beta))^2 = (0.2 - 0.25)^2, (-0.1 - 0.25)^2
        ("ipo", [0.0025, 0.1225]),
    ],
)
def test_dpo_loss_matches_hand_computed_values(loss_type, expected):
    out = diffusion_dpo_loss(MODEL_W, MODEL_L, REF_W, REF_L, beta=BETA, loss_type=loss_type)
    torch.testing.assert_close(out.logits, torch.tensor([0.2, -0.1]))
    torch.testing.assert_close(out.losses, torch.tensor(expected))
    assert out.implicit_accuracy.item() == pytest.approx(0.5)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_dpo_loss_gradient_lowers_winner_error_and_raises_loser_error(loss_type):
    """At model == reference every loss pushes the winner's error down and the loser's up."""
    model_w = torch.tensor([0.2, 0.4], requires_grad=True)
    model_l = torch.tensor([0.3, 0.1], requires_grad=True)
    out = diffusion_dpo_loss(model_w, model_l, model_w.detach(), model_l.detach(), beta=BETA, loss_type=loss_type)
    assert out.implicit_accuracy.item() == pytest.approx(0.5)  # ties count one half
    out.losses.mean().backward()
    assert (model_w.grad > 0).all() and (model_l.grad < 0).all()


def test_dpo_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="loss_type"):
        diffusion_dpo_loss(MODEL_W, MODEL_L, REF_W, REF_L, beta=BETA, loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        diffusion_dpo_loss(MODEL_W, MODEL_L, REF_W, REF_L, beta=0.0)
    with pytest.raises(ValueError, match="same shape"):
        diffusion_dpo_loss(MODEL_W, MODEL_L[:1], REF_W, REF_L, beta=BETA)


REWARDS = torch.tensor([[0.1, 0.5, 0.3], [0.2, 0.2, 0.2], [0.9, 0.1, 0.4]])


def test_best_vs_worst_pairs_skip_tied_groups():
    pairs = form_preference_pairs(REWARDS, mode="best_worst")
    assert pairs.winner.tolist() == [1, 6] and pairs.loser.tolist() == [0, 7] and pairs.group.tolist() == [0, 2]
    torch.testing.assert_close(pairs.reward_gap, torch.tensor([0.4, 0.8]))
    assert len(pairs) == 2


def test_all_pairs_and_min_reward_gap():
    pairs = form_preference_pairs(REWARDS, mode="all")
    assert sorted(zip(pairs.winner.tolist(), pairs.loser.tolist())) == [(1, 0), (1, 2), (2, 0), (6, 7), (6, 8), (8, 7)]
    flat = REWARDS.flatten()
    assert (flat[pairs.winner] > flat[pairs.loser]).all()
    torch.testing.assert_close(pairs.reward_gap, flat[pairs.winner] - flat[pairs.loser])
    wide = form_preference_pairs(REWARDS, mode="all", min_reward_gap=0.25)
    assert sorted(zip(wide.winner.tolist(), wide.loser.tolist())) == [(1, 0), (6, 7), (6, 8), (8, 7)]
    assert len(form_preference_pairs(torch.ones(2, 4))) == 0


def test_pair_forming_rejects_bad_input():
    with pytest.raises(ValueError, match="K >= 2"):
        form_preference_pairs(torch.rand(3, 1))
    with pytest.raises(ValueError, match="mode"):
        form_preference_pairs(REWARDS, mode="random")


# The DPO trainer on the tiny SD-x4-upscaler (in-process), its data, and both RL scripts under accelerate launch.


def make_trainer(tmp_path, photos, reward=brightness, **overrides):
    torch.manual_seed(0)
    generator = SDUpscalerGenerator.from_pipeline(build_sd_upscaler_pipeline("tiny"))
    options = dict(
        output_dir=str(tmp_path / "dpo"),
        num_samples_per_image=3,
        num_inference_steps=2,
        train_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        validation_steps=0,
        report_to="none",
    )
    dataset = LRHRDataset(list(photos.values()), resolution=32)
    return DiffusionDPOTrainer(
        generator, reward=reward, args=DiffusionDPOConfig(**{**options, **overrides}), train_dataset=dataset
    )


def lora_b_gradients_nonzero(trainer) -> bool:
    """Every LoRA B matrix received a gradient (at LoRA's init, B = 0, so the A matrices get none yet)."""
    named = [(n, p) for n, p in trainer.generator.unet.named_parameters() if "lora_B" in n]
    return bool(named) and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in named)


def test_dpo_config_validation():
    assert (
        DiffusionDPOConfig().beta_dpo == 2500
        and DiffusionDPOConfig().loss_type == "sigmoid"
        and DiffusionDPOConfig().num_samples_per_image == 4
    )
    for bad, match in [
        (dict(loss_type="kto"), "loss_type"),
        (dict(num_samples_per_image=1), "num_samples_per_image"),
        (dict(use_lora=False), "use_lora"),
        (dict(preference_source="human"), "preference_source"),
        (dict(pairing="random"), "pairing"),
        (dict(beta_dpo=0), "beta_dpo"),
    ]:
        with pytest.raises(ValueError, match=match):
            DiffusionDPOConfig(**bad)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_few_dpo_steps_raise_implicit_accuracy_on_a_fixed_preference_batch(loss_type, skimage_photos, tmp_path):
    # beta 10 puts IPO's target margin 1 / (2 beta) = 0.05 above what 5 Adam steps reach, so no loss overshoots
    trainer = make_trainer(tmp_path, skimage_photos, loss_type=loss_type, beta_dpo=10.0)
    torch.manual_seed(1)
    condition = trainer.generator.encode_condition(torch.rand(4, 3, 8, 8))
    latents_w, latents_l, noise = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    timesteps = torch.tensor([100, 300, 500, 700])

    def evaluate():
        with torch.no_grad():
            return trainer.preference_loss(latents_w, latents_l, condition, noise, timesteps)[0]

    start = evaluate()
    assert start.implicit_accuracy.item() == 0.5 and start.logits.abs().max() == 0  # LoRA B = 0: model == reference
    lora_before = [p.detach().clone() for p in trainer.generator.trainable_parameters()]
    for _ in range(5):
        output, logs = trainer.preference_loss(latents_w, latents_l, condition, noise, timesteps)
        output.losses.mean().backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
    end = evaluate()
    assert end.implicit_accuracy.item() == 1.0 and (end.logits > 0).all()
    assert end.losses.mean() < start.losses.mean()
    assert logs["ref_error"] > 0 and logs["model_error"] != logs["ref_error"]
    changed = [not torch.equal(a, b) for a, b in zip(lora_before, trainer.generator.trainable_parameters())]
    assert all(changed) and all("lora" in n for n, p in trainer.generator.unet.named_parameters() if p.requires_grad)


def test_online_pairs_prefer_the_higher_reward_candidate(skimage_photos, tmp_path):
    trainer = make_trainer(tmp_path, skimage_photos)
    torch.manual_seed(2)
    image_lr = torch.rand(2, 3, 8, 8)
    latents_w, latents_l, condition, weights, logs = trainer.online_pairs(image_lr)
    assert latents_w.shape == (2, 4, 8, 8) and condition.batch_size == 2 and weights.tolist() == [1.0, 1.0]
    with torch.no_grad():
        reward_w, reward_l = (
            brightness(trainer.generator.decode(latents_w)),
            brightness(trainer.generator.decode(latents_l)),
        )
    assert (reward_w > reward_l).all()
    torch.testing.assert_close((reward_w - reward_l).mean().item(), logs["reward_gap"], rtol=1e-4, atol=1e-6)
    trainer.args.pairing = "all"
    assert trainer.online_pairs(image_lr)[-1]["num_pairs"] == 2 * 3  # K (K - 1) / 2 = 3 pairs per LR image

    loss, logs = trainer.compute_loss({"image_lr": image_lr})
    loss.backward()
    assert torch.isfinite(loss) and lora_b_gradients_nonzero(trainer)
    assert {"implicit_accuracy", "reward_mean", "num_pairs", "model_error", "ref_error"} <= set(logs)


def test_tied_rewards_give_a_zero_weight_pair_and_zero_gradient(skimage_photos, tmp_path):
    trainer = make_trainer(tmp_path, skimage_photos, reward=lambda images: torch.zeros(len(images)))
    loss, logs = trainer.compute_loss({"image_lr": torch.rand(2, 3, 8, 8)})
    loss.backward()
    assert logs["num_pairs"] == 0 and loss.item() == 0
    assert all(p.grad.abs().max() == 0 for p in trainer.generator.trainable_parameters())


def preference_rows(photos):
    """FGR-like rows: the photo crop (GT), a noisy copy (SR) and a half-swapped copy (SYN), 64 x 64."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for photo in photos.values():
        gt = pil_to_tensor(photo.crop((0, 0, 64, 64)))
        sr = (gt + 0.3 * torch.randn(gt.shape, generator=generator)).clamp(0, 1)
        syn = torch.cat([sr[:, :32], gt[:, 32:]], dim=1)
        rows.append(
            {key: tensor_to_pil(value) for key, value in (("image_gt", gt), ("image_sr", sr), ("image_syn", syn))}
        )
    return rows


def test_preference_pair_dataset_crops_aligned_pairs(skimage_photos):
    rows = preference_rows(skimage_photos)
    dataset = PreferencePairDataset(rows, resolution=32, random_crop=False)
    item = dataset[0]
    assert item["image_lr"].shape == (3, 8, 8) and item["image_chosen"].shape == (3, 32, 32)
    box = (16, 16, 48, 48)  # the centred 32 x 32 crop of 64 x 64
    for key, column in (("image_gt", "image_gt"), ("image_chosen", "image_syn"), ("image_rejected", "image_sr")):
        torch.testing.assert_close(item[key], pil_to_tensor(rows[0][column].crop(box)))
    expected_lr = pil_to_tensor(rows[0]["image_gt"].crop(box).resize((8, 8), Image.BICUBIC))
    torch.testing.assert_close(item["image_lr"], expected_lr)
    # a random crop takes the same box from the three columns
    random_item = PreferencePairDataset(rows, resolution=32, random_crop=True, seed=3)[1]
    boxes = [(x, y, x + 32, y + 32) for x in range(0, 33, 4) for y in range(0, 33, 4)]
    found = [
        box for box in boxes if torch.equal(random_item["image_gt"], pil_to_tensor(rows[1]["image_gt"].crop(box)))
    ]
    assert len(found) == 1
    torch.testing.assert_close(random_item["image_chosen"], pil_to_tensor(rows[1]["image_syn"].crop(found[0])))
    torch.testing.assert_close(random_item["image_rejected"], pil_to_tensor(rows[1]["image_sr"].crop(found[0])))
    with pytest.raises(ValueError, match="no column"):
        PreferencePairDataset(rows, chosen_column="image_best")
    with pytest.raises(ValueError, match="smaller than"):
        PreferencePairDataset(rows, resolution=128)[0]
    mismatched = [{**rows[0], "image_sr": rows[0]["image_sr"].resize((48, 48))}]
    with pytest.raises(ValueError, match="differ in size"):
        PreferencePairDataset(mismatched, resolution=32)[0]


def test_offline_dpo_trains_on_the_dataset_pairs(skimage_photos, tmp_path):
    dataset = PreferencePairDataset(preference_rows(skimage_photos), resolution=32, random_crop=False)
    trainer = make_trainer(tmp_path, skimage_photos, preference_source="offline")
    batch = {key: torch.stack([dataset[i][key] for i in range(2)]) for key in dataset[0]}
    latents_w, latents_l, condition, weights, logs = trainer.offline_pairs(batch)
    with torch.no_grad():
        torch.testing.assert_close(latents_w, trainer.generator.encode_images(batch["image_chosen"]))
        torch.testing.assert_close(latents_l, trainer.generator.encode_images(batch["image_rejected"]))
    assert condition.batch_size == 2 and weights.tolist() == [1.0, 1.0] and logs == {}
    loss, logs = trainer.compute_loss(batch)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # model == reference: -logsigmoid(0)
    loss.backward()
    assert lora_b_gradients_nonzero(trainer)
    with pytest.raises(ValueError, match="image_chosen"):
        trainer.compute_loss({"image_lr": batch["image_lr"]})


@pytest.mark.parametrize(
    "script, options, logged",
    [
        ("train_dpo.py", ["--num_samples_per_image", "2", "--loss_type", "hinge"], "train/implicit_accuracy"),
        (
            "train_grpo.py",
            ["--num_samples_per_image", "2", "--kl_beta", "0.1", "--rollout_reuse", "2"],
            "train/kl_ref",
        ),
    ],
)
def test_script_two_processes_checkpoint_resume_and_switch_stages(
    script, options, logged, make_rm, tiny_rm1_dir, skimage_photos, tmp_path
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    upscaler = save_tiny_sd_upscaler(tmp_path / "tiny-upscaler")
    rm0 = tmp_path / "rm-stage0"
    make_rm(stage=0).save_pretrained(rm0)
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    for name in ("astronaut", "coffee"):
        skimage_photos[name].save(hr_dir / f"{name}.png")
    output_dir = tmp_path / "run"
    common = [
        "--pretrained_model_name_or_path",
        str(upscaler),
        "--train_data_dir",
        str(hr_dir),
        "--resolution",
        "32",
        "--reward_schedule",
        f"0:{rm0},3:{tiny_rm1_dir}",
        "--use_lora",
        "--rank",
        "4",
        "--output_dir",
        str(output_dir),
        "--checkpointing_steps",
        "2",
        "--checkpoints_total_limit",
        "1",
        "--validation_steps",
        "4",
        "--num_validation_images",
        "1",
        "--validation_inference_steps",
        "2",
        "--num_inference_steps",
        "2",
        "--train_batch_size",
        "1",
        "--gradient_accumulation_steps",
        "1",
        "--learning_rate",
        "1e-3",
        *options,
    ]
    launch(script, [*common, "--max_train_steps", "2"], cwd=tmp_path)
    assert (output_dir / "checkpoint-2" / "pytorch_lora_weights.safetensors").is_file()
    resumed = launch(script, [*common, "--max_train_steps", "4", "--resume_from_checkpoint", "latest"], cwd=tmp_path)
    assert "checkpoint-2 at step 2" in resumed.stdout + resumed.stderr

    assert sorted(p.name for p in output_dir.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-4"]
    callback_state = json.loads((output_dir / "checkpoint-4" / "callback_state.json").read_text())["CCLRewardCallback"]
    assert [(s["step"], s["stage"]) for s in callback_state["switches"]] == [(0, 0), (3, 1)]
    scalars = {}
    for events in (output_dir / "logs").rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    assert sorted(step for step, _ in scalars["train/loss"]) == [1, 2, 3, 4]
    assert sorted(step for step, _ in scalars[logged]) == [1, 2, 3, 4]
    assert [(step, value) for step, value in scalars["curriculum/stage"] if value == 1.0] == [(3, 1.0)]
    assert [step for step, _ in scalars["validation/hacking_gap"]] == [4]
    saved = load_file(output_dir / "pytorch_lora_weights.safetensors")
    up_weights = [tensor for key, tensor in saved.items() if key.endswith("lora.up.weight")]  # diffusers' lora_B
    assert up_weights and all(tensor.abs().sum() > 0 for tensor in up_weights)
    method = "diffusion-dpo" if script == "train_dpo.py" else "grpo"
    assert method in (output_dir / "README.md").read_text()


def test_dpo_script_builds_offline_pairs_from_a_saved_dataset(skimage_photos, tmp_path):
    import datasets
    from transformers import HfArgumentParser

    from finpercep_hf.scripting.generator_training import GeneratorScriptArguments, build_preference_datasets

    rows = preference_rows(skimage_photos)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "pairs"))
    parser = HfArgumentParser(GeneratorScriptArguments)
    (script_args,) = parser.parse_args_into_dataclasses(
        [
            "--pretrained_model_name_or_path",
            "p",
            "--reward_schedule",
            "0:r",
            "--dataset",
            str(tmp_path / "pairs"),
            "--resolution",
            "32",
            "--chosen_column",
            "image_gt",
            "--rejected_column",
            "image_sr",
        ]
    )
    train, evaluation = build_preference_datasets(script_args, "offline")
    assert len(train) == len(rows) and isinstance(evaluation, PreferencePairDataset)
    item = evaluation[0]
    torch.testing.assert_close(item["image_chosen"], item["image_gt"])
    assert not torch.equal(item["image_rejected"], item["image_gt"])
    script_args.dataset = None
    with pytest.raises(ValueError, match="offline needs --dataset"):
        build_preference_datasets(script_args, "offline")


def test_small_beta_two_candidates_and_exact_gap_message():
    ones = torch.ones(2)
    out = diffusion_dpo_loss(ones, ones * 2, ones, ones, beta=0.5)  # beta in (0, 1] is valid
    torch.testing.assert_close(out.logits, ones)
    torch.testing.assert_close(out.losses, -torch.nn.functional.logsigmoid(torch.full((2,), 0.5)))
    pairs = form_preference_pairs(torch.tensor([[0.2, 0.7], [0.9, 0.1]]), mode="all")  # K = 2 is enough
    assert pairs.winner.tolist() == [1, 2] and pairs.loser.tolist() == [0, 3]
    with pytest.raises(ValueError, match=r"^min_reward_gap must be >= 0, got -0\.1\.$"):
        form_preference_pairs(torch.zeros(1, 2), min_reward_gap=-0.1)
