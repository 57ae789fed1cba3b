"""Each toolkit adapter called exactly as its toolkit calls a reward function or metric."""

from concurrent import futures

import numpy as np
import pytest
import torch

from finpercep_hf.integrations import FinPercepMetric, ddpo_reward_fn, flow_grpo_reward, pdm_statistics
from finpercep_hf.rewards import FinPercepReward


@pytest.fixture
def rm1(make_rm):
    model = make_rm(stage=1)
    with torch.no_grad():  # a non-trivial head, so global_score differs from base_score
        model.score_head.mlp[-1].weight.normal_(std=0.5)
    return model


@pytest.fixture
def sampled():
    """A sampled batch as a diffusion pipeline returns it (output_type="pt"): float NCHW in [0, 1]."""
    torch.manual_seed(0)
    return torch.rand(4, 3, 40, 48)


def expected_scores(model, images):
    with torch.no_grad():
        return model(images)


def flow_grpo_multi_score(score_fns, score_dict, images, prompts, metadata):
    """Flow-GRPO's combination loop: each reward's ``(scores, info)``, weighted and summed into ``avg``."""
    total, details, infos = np.zeros(len(images)), {}, {}
    for name, weight in score_dict.items():
        scores, infos[name] = score_fns[name](images, prompts, metadata)
        details[name] = scores
        total = total + weight * np.asarray(scores)
    details["avg"] = total
    return details, infos


def test_flow_grpo_float_nchw_and_uint8_nhwc(rm1, sampled):
    reward_fn = flow_grpo_reward(rm1, pdm_threshold=0.5)
    prompts, metadata = ["a photo"] * 4, [{}] * 4
    details, infos = flow_grpo_multi_score({"finpercep": reward_fn}, {"finpercep": 0.7}, sampled, prompts, metadata)
    info = infos["finpercep"]
    expected = expected_scores(rm1, sampled)
    np.testing.assert_allclose(details["finpercep"], expected.global_score.numpy(), atol=1e-6)
    np.testing.assert_allclose(details["avg"], 0.7 * expected.global_score.numpy(), atol=1e-6)
    assert details["finpercep"].dtype == np.float32 and details["finpercep"].shape == (4,)
    pdm = expected.pdm.flatten(1)
    np.testing.assert_allclose(info["pdm_mean"], pdm.mean(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(info["pdm_max"], pdm.amax(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(info["pdm_area"], (pdm > 0.5).float().mean(1).numpy(), atol=1e-6)
    # evaluation path: uint8 NHWC numpy, as Flow-GRPO converts before logging
    uint8 = (sampled * 255).round().clamp(0, 255).to(torch.uint8).numpy().transpose(0, 2, 3, 1)
    scores, _ = reward_fn(uint8, prompts, metadata)
    np.testing.assert_allclose(
        scores,
        expected_scores(rm1, torch.from_numpy(uint8).permute(0, 3, 1, 2) / 255.0).global_score.numpy(),
        atol=1e-6,
    )
    assert np.abs(scores - details["finpercep"]).max() < 1e-2  # quantisation only


def test_flow_grpo_base_score_and_stage0_info(make_rm, sampled):
    rm0 = make_rm(stage=0)
    scores, info = flow_grpo_reward(rm0, score="base_score")(sampled, None, None)
    np.testing.assert_allclose(scores, expected_scores(rm0, sampled).base_score.numpy(), atol=1e-6)
    assert info == {}
    with pytest.raises(ValueError, match="score"):
        flow_grpo_reward(rm0, score="pdm")


def test_ddpo_reward_fn_in_a_thread_pool(rm1, sampled, tiny_rm1_dir):
    """ddpo-pytorch submits the reward to an executor and converts with torch.as_tensor."""
    reward_fn = ddpo_reward_fn(rm1)
    prompts, prompt_metadata = ["a photo"] * 4, [{}] * 4
    with futures.ThreadPoolExecutor(max_workers=2) as executor:
        pending = executor.submit(reward_fn, sampled, prompts, prompt_metadata)
        rewards, reward_metadata = pending.result()
    rewards = torch.as_tensor(rewards, device="cpu")
    expected = expected_scores(rm1, sampled)
    torch.testing.assert_close(rewards, expected.global_score, atol=1e-6, rtol=0)
    torch.testing.assert_close(reward_metadata["base_score"], expected.base_score, atol=1e-6, rtol=0)
    assert set(reward_metadata) == {"base_score", "pdm_mean", "pdm_max", "pdm_area"}
    from_dir, _ = ddpo_reward_fn(tiny_rm1_dir)(sampled[:1], prompts[:1], prompt_metadata[:1])
    assert from_dir.shape == (1,) and 0 <= from_dir.item() <= 1


def test_pyiqa_style_metric_on_tensors_and_paths(rm1, skimage_photos, tmp_path):
    metric = FinPercepMetric(rm1)
    assert metric.lower_better is False and metric.score_range == "0, 1" and metric.metric_mode == "NR"
    photo = skimage_photos["rocket"].crop((0, 0, 48, 40))
    path = tmp_path / "rocket.png"
    photo.save(path)
    from_path = metric(str(path))
    tensor = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 255
    from_tensor = metric(tensor)
    assert from_path.shape == (1,) and not from_path.requires_grad
    torch.testing.assert_close(from_path, expected_scores(rm1, tensor).global_score, atol=1e-6, rtol=0)
    torch.testing.assert_close(from_tensor, from_path, atol=1e-6, rtol=0)
    assert metric([str(path), photo]).shape == (2,)
    with pytest.raises(ValueError, match="no-reference"):
        metric(tensor, tensor)


def test_pyiqa_style_loss_keeps_gradients(rm1, sampled):
    loss_fn = FinPercepMetric(rm1, as_loss=True, loss_weight=2.0)
    x = sampled.clone().requires_grad_(True)
    loss = loss_fn(x)
    assert loss.ndim == 0
    torch.testing.assert_close(loss.detach(), 2.0 * expected_scores(rm1, sampled).global_score.mean())
    (1 - loss).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in rm1.parameters())  # the metric is frozen
    per_image = FinPercepMetric(rm1, as_loss=True, loss_reduction="none")(sampled)
    assert per_image.shape == (4,)


def test_trl_reward_funcs_signature_stays(rm1, sampled):
    reward = FinPercepReward(rm1)
    completions = list(sampled)
    rewards = reward(prompts=["p"] * 4, completions=completions, completion_ids=None)
    assert isinstance(rewards, list) and len(rewards) == 4
    np.testing.assert_allclose(rewards, expected_scores(rm1, sampled).global_score.numpy(), atol=1e-6)


def test_pdm_statistics_values():
    pdm = torch.zeros(2, 1, 4, 4)
    pdm[0, 0, :2] = 0.8  # half the image above 0.5
    pdm[1, 0, 0, 0] = 0.3
    stats = pdm_statistics(pdm, threshold=0.5)
    torch.testing.assert_close(stats["pdm_mean"], torch.tensor([0.4, 0.3 / 16]))
    torch.testing.assert_close(stats["pdm_max"], torch.tensor([0.8, 0.3]))
    torch.testing.assert_close(stats["pdm_area"], torch.tensor([0.5, 0.0]))
    assert pdm_statistics(None) == {}
