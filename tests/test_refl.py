"""REFL trainer, CCL reward callback, hacking monitor and LR/HR data on tiny local models (in-process)."""

from contextlib import contextmanager
from types import SimpleNamespace

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import TrainerControl, TrainerState

from finpercep_hf.curriculum import CCLRewardCallback
from finpercep_hf.data import LRHRDataset
from finpercep_hf.generators import SDUpscalerGenerator, build_sd_upscaler_pipeline
from finpercep_hf.images import pil_to_tensor
from finpercep_hf.rewards import CallableReward, FinPercepReward
from finpercep_hf.trainers import REFLConfig, REFLTrainer, RewardHackingMonitor


def tiny_config(tmp_path, **overrides):
    options = dict(
        output_dir=str(tmp_path / "refl"),
        num_inference_steps=4,
        min_stop_step=2,
        gradient_accumulation_steps=1,
        train_batch_size=1,
        learning_rate=1e-2,
        validation_steps=0,
        report_to="none",
    )
    return REFLConfig(**{**options, **overrides})


@pytest.fixture
def trainer(make_rm, skimage_photos, tmp_path):
    torch.manual_seed(0)
    generator = SDUpscalerGenerator.from_pipeline(build_sd_upscaler_pipeline("tiny"))
    dataset = LRHRDataset(list(skimage_photos.values()), resolution=32)
    return REFLTrainer(generator, reward=make_rm(stage=1), args=tiny_config(tmp_path), train_dataset=dataset)


def fixed_batch_loss(trainer, batch):
    """The REFL loss with the same noise and stop step every call (a fixed batch in the strict sense)."""
    trainer.rng.manual_seed(0)
    return trainer.compute_loss(batch)


def test_refl_config_defaults_and_validation():
    config = REFLConfig()
    assert (config.num_inference_steps, config.min_stop_step, config.reward_offset, config.grad_scale) == (
        40, 30, 2.0, 1e-3,
    )  # fmt: skip
    assert (config.learning_rate, config.train_batch_size, config.gradient_accumulation_steps) == (1e-5, 2, 4)
    with pytest.raises(ValueError, match="min_stop_step"):
        REFLConfig(min_stop_step=40)
    with pytest.raises(ValueError, match="mixed_precision"):
        REFLConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="checkpoints_total_limit"):
        REFLConfig(checkpoints_total_limit=0)


def test_refl_lowers_the_reward_gap_on_a_fixed_batch_and_changes_lora_only(trainer):
    generator = trainer.generator
    batch = {key: value[None] for key, value in trainer.train_dataset[0].items()}
    frozen_before = {name: p.detach().clone() for name, p in generator.unet.named_parameters()}
    vae_before = [p.detach().clone() for p in generator.vae.parameters()]
    rm_before = [p.detach().clone() for p in trainer.reward.model.parameters()]

    first_loss, first_logs = fixed_batch_loss(trainer, batch)
    for _ in range(4):
        loss, _ = fixed_batch_loss(trainer, batch)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
    last_loss, last_logs = fixed_batch_loss(trainer, batch)

    # loss = relu(2 - reward) * 1e-3, so the gap 2 - reward shrinks exactly when the reward grows.
    assert first_loss.item() == pytest.approx((2 - first_logs["reward"]) * 1e-3, rel=1e-5)
    assert last_logs["reward"] > first_logs["reward"]
    assert last_loss.item() < first_loss.item()
    changed = {name for name, p in generator.unet.named_parameters() if not torch.equal(p, frozen_before[name])}
    assert changed and all("lora_" in name for name in changed)
    assert all(torch.equal(a, b) for a, b in zip(vae_before, generator.vae.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(rm_before, trainer.reward.model.parameters()))


def test_gradients_flow_from_the_rm_into_every_lora_weight(trainer):
    with torch.no_grad():
        for name, parameter in trainer.generator.unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    batch = {key: value[None] for key, value in trainer.train_dataset[1].items()}
    loss, logs = fixed_batch_loss(trainer, batch)
    assert 2 <= logs["stop_step"] <= 3
    loss.backward()
    lora = {name: p for name, p in trainer.generator.unet.named_parameters() if "lora_" in name}
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.values())
    assert all(p.grad is None for p in trainer.reward.model.parameters())


def test_pretrain_loss_alternates_with_refl(trainer):
    trainer.args.pretrain_loss = True
    batch = {key: value[None] for key, value in trainer.train_dataset[2].items()}
    trainer.state.global_step = 0
    _, refl_logs = trainer.compute_loss(batch)
    trainer.state.global_step = 1
    loss, pretrain_logs = trainer.compute_loss(batch)
    assert "reward" in refl_logs and "pretrain_loss" not in refl_logs
    assert set(pretrain_logs) == {"pretrain_loss"} and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.generator.trainable_parameters())


def test_ccl_callback_switches_at_the_schedule_steps_and_after_resume():
    loads = []

    def load_model(checkpoint):
        loads.append(checkpoint)
        return torch.nn.Linear(1, 1)

    def run(callback, reward, steps, resume_at=0):
        state, control, args = TrainerState(global_step=resume_at), TrainerControl(), None
        callback.on_train_begin(args, state, control, reward=reward)
        sources = {}
        for step in steps:
            state.global_step = step
            callback.on_step_begin(args, state, control, reward=reward)
            sources[step] = reward.source
        return sources

    schedule = "0:rm0,3:rm1,5:rm2"
    callback = CCLRewardCallback(schedule, load_model=load_model)
    reward = FinPercepReward(None)
    sources = run(callback, reward, range(4))
    assert sources == {0: "rm0", 1: "rm0", 2: "rm0", 3: "rm1"}
    assert loads == ["rm0", "rm1"]  # lazily: one load per stage, when it starts
    assert callback.active_stage == 1
    saved = callback.state_dict()

    # Resume at step 4 in a fresh process: the script loads RM_0 first, the callback restores RM_1 at once.
    loads.clear()
    resumed = CCLRewardCallback(schedule, load_model=load_model)
    resumed.load_state_dict(saved)
    reward = FinPercepReward(torch.nn.Linear(1, 1), source="rm0")
    sources = run(resumed, reward, range(4, 7), resume_at=4)
    assert sources == {4: "rm1", 5: "rm2", 6: "rm2"}
    assert loads == ["rm1", "rm2"]
    assert [(s["step"], s["stage"]) for s in resumed.switches] == [(0, 0), (3, 1), (5, 2)]
    with pytest.raises(ValueError, match="same --reward_schedule"):
        CCLRewardCallback("0:rm0,4:rm1", load_model=load_model).load_state_dict(saved)


class FakeGenerator:
    """Policy samples = bicubic LR + 0.1; reference samples (adapters off) = bicubic LR."""

    device = torch.device("cpu")
    has_lora = True

    def __init__(self):
        self.adapters = True

    @contextmanager
    def reference_policy(self):
        self.adapters = False
        yield
        self.adapters = True

    def sample(self, image_lr, num_inference_steps, generator=None):
        up = F.interpolate(image_lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
        return SimpleNamespace(images=(up + (0.1 if self.adapters else 0.0)).clamp(0, 1))


def test_hacking_monitor_logs_gap_fidelity_and_images(tmp_path):
    torch.manual_seed(0)
    image_gt = torch.rand(2, 3, 32, 32) * 0.8
    image_lr = F.interpolate(image_gt, scale_factor=0.25, mode="bicubic", align_corners=False).clamp(0, 1)

    def brightness(pixels):
        return pixels.mean(dim=(1, 2, 3))

    def darkness(pixels):
        return 1 - pixels.mean(dim=(1, 2, 3))

    monitor = RewardHackingMonitor(iqa=CallableReward(darkness))
    result = monitor.evaluate(FakeGenerator(), CallableReward(brightness), image_lr, image_gt, num_inference_steps=1)
    up = F.interpolate(image_lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    policy = (up + 0.1).clamp(0, 1)
    s = result.scalars
    assert s["reward"] == pytest.approx(policy.mean().item(), abs=1e-6)
    assert s["reward_reference"] == pytest.approx(up.mean().item(), abs=1e-6)
    assert s["base_iqa"] == pytest.approx(1 - policy.mean().item(), abs=1e-6)
    ssim = kornia.metrics.ssim(policy, image_gt, 11).mean().item()
    ssim_reference = kornia.metrics.ssim(up, image_gt, 11).mean().item()
    assert s["ssim"] == pytest.approx(ssim, abs=1e-5)
    assert s["ssim_reference"] == pytest.approx(ssim_reference, abs=1e-5)
    psnr = (10 * torch.log10(1 / (policy - image_gt).pow(2).flatten(1).mean(1))).mean().item()
    assert s["psnr"] == pytest.approx(psnr, abs=1e-4)
    gain = ((s["base_iqa"] - s["base_iqa_reference"]) + (ssim - ssim_reference)) / 2
    assert s["hacking_gap"] == pytest.approx(s["reward"] - s["reward_reference"] - gain, abs=1e-5)
    assert s["hacking_gap"] > 0  # brighter = more reward, while the other IQA drops: hacking
    assert "lpips" not in s and result.pdm is None

    written = RewardHackingMonitor.write_images(result, tmp_path)
    assert [p.name for p in written["panels"]] == ["0_panel.png", "1_panel.png"]
    panel = pil_to_tensor(Image.open(written["panels"][1]))
    assert panel.shape == (3, 32, 128)
    torch.testing.assert_close(panel[:, :, 96:], image_gt[1], atol=1 / 255, rtol=0)


def test_lrhr_dataset_crops_pairs_and_errors(skimage_photos, tmp_path):
    photo = skimage_photos["chelsea"]
    item = LRHRDataset([photo], resolution=64, random_crop=False)[0]
    assert item["image_gt"].shape == (3, 64, 64) and item["image_lr"].shape == (3, 16, 16)
    gt_pixels = (item["image_gt"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    expected_lr = pil_to_tensor(Image.fromarray(gt_pixels).resize((16, 16), Image.BICUBIC))
    torch.testing.assert_close(item["image_lr"], expected_lr)

    (tmp_path / "gt").mkdir()
    (tmp_path / "lr").mkdir()
    photo.save(tmp_path / "gt" / "a.png")
    photo.resize((photo.width // 4, photo.height // 4), Image.BICUBIC).save(tmp_path / "lr" / "a.png")
    paired = LRHRDataset.from_directory(tmp_path, resolution=32, seed=3)
    item = paired[0]
    assert paired.images_lr == [tmp_path / "lr" / "a.png"]
    assert item["image_lr"].shape == (3, 8, 8)
    degraded = LRHRDataset([photo], resolution=32, degrade=lambda gt, seed: gt[:, ::4, ::4])[0]
    torch.testing.assert_close(degraded["image_lr"], degraded["image_gt"][:, ::4, ::4])
    with pytest.raises(ValueError, match="smaller than the 512x512 crop"):
        LRHRDataset([photo], resolution=512)[0]
    with pytest.raises(ValueError, match="multiple of the scale"):
        LRHRDataset([photo], resolution=30)


def test_full_unet_fine_tuning_checkpoints_and_saves_the_unet(make_rm, skimage_photos, tmp_path, monkeypatch):
    import finpercep_hf.trainers.generator_card as generator_card

    def no_hub_lookup(*args, **kwargs):
        raise AssertionError("a run that does not push must not look for a model card on the Hub")

    monkeypatch.setattr(generator_card, "load_or_create_model_card", no_hub_lookup)
    torch.manual_seed(0)
    generator = SDUpscalerGenerator.from_pipeline(build_sd_upscaler_pipeline("tiny"))
    dataset = LRHRDataset(list(skimage_photos.values())[:2], resolution=32)
    config = tiny_config(tmp_path, use_lora=False, max_train_steps=1, checkpointing_steps=1, learning_rate=1e-3)
    before = [p.detach().clone() for p in generator.unet.parameters()]
    trainer = REFLTrainer(generator, reward=make_rm(stage=0), args=config, train_dataset=dataset)
    assert not generator.has_lora and all(p.requires_grad for p in generator.unet.parameters())
    trainer.train()
    output_dir = tmp_path / "refl"
    assert (output_dir / "checkpoint-1" / "unet.safetensors").is_file()
    assert (output_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (output_dir / "pytorch_lora_weights.safetensors").exists()
    assert any(not torch.equal(a, b) for a, b in zip(before, generator.unet.parameters()))
    card = (output_dir / "README.md").read_text()
    assert "REFL fine-tuned UNet" in card and "library_name: diffusers" in card and "- finpercep" in card
    assert 'subfolder="unet"' in card and "load_lora_weights" not in card and "- lora" not in card
