"""The flow-matching SR generator: LR-stream transformer, flow math, SDE log-probabilities, prompt cache, LoRA."""

import math

import pytest
import torch
from diffusers import SD3Transformer2DModel, StableDiffusion3ControlNetPipeline, StableDiffusion3Pipeline

from finpercep_hf.generators.flow_random_init import (
    TRANSFORMER_CONFIGS,
    build_flow_sr_generator,
    build_flow_sr_pipeline,
    save_tiny_flow_sr,
)
from finpercep_hf.generators.flow_sd3 import FlowSRGenerator
from finpercep_hf.generators.loading import detect_generator_type, load_generator
from finpercep_hf.generators.policy import DDIMPolicy, FlowSDEPolicy, stochastic_policy
from finpercep_hf.generators.prompt_embeds import cached_prompt_embeddings, save_prompt_embeddings
from finpercep_hf.generators.sd3_lr_stream import SD3LRStreamTransformer2DModel

pytestmark = pytest.mark.usefixtures("one_thread")


def transformer_inputs(batch: int = 2, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, 16, 8, 8, generator=generator),
        encoder_hidden_states=torch.randn(batch, 5, 32, generator=generator),
        pooled_projections=torch.randn(batch, 16, generator=generator),
        timestep=torch.tensor([700.0, 200.0][:batch]),
    )


def test_lr_stream_transformer_zero_init_round_trip_and_live_lr_stream(tmp_path):
    torch.manual_seed(0)
    model = SD3LRStreamTransformer2DModel(**TRANSFORMER_CONFIGS["tiny"]).eval()
    for layer in model.lr_stream:
        for module in (layer.to_q_control, layer.to_k_control, layer.to_v_control, layer.control_conv):
            assert module.weight.abs().max() == 0 and module.bias.abs().max() == 0
    block = model.transformer_blocks[0]
    assert torch.equal(model.lr_stream[0].to_out_control.weight, block.attn.to_out[0].weight)
    inputs = transformer_inputs()
    lr_a, lr_b = torch.randn(2, 2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_a = model(**inputs, controlnet_image=lr_a).sample
        out_b = model(**inputs, controlnet_image=lr_b).sample
        plain = model(**inputs).sample
    assert out_a.shape == (2, 16, 8, 8)
    assert (out_a - out_b).abs().max() > 1e-3  # the LR tokens take part in the joint attention from the start
    assert (out_a - plain).abs().max() > 1e-3
    # the model saves and loads as its own class, outputs unchanged
    model.save_pretrained(tmp_path / "transformer")
    loaded = SD3LRStreamTransformer2DModel.from_pretrained(tmp_path / "transformer").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs, controlnet_image=lr_a).sample, out_a)
    # the zero-initialised conv receives a gradient: the LR features can learn to flow into the noisy stream
    model.train()
    model(**inputs, controlnet_image=lr_a).sample.square().mean().backward()
    assert model.lr_stream[0].control_conv.weight.grad.abs().sum() > 0
    assert model.lr_stream[0].to_k_control.weight.grad.abs().sum() > 0


def test_lr_stream_from_sd3_keeps_the_sd3_weights_and_outputs():
    torch.manual_seed(0)
    base = SD3Transformer2DModel(**TRANSFORMER_CONFIGS["tiny"]).eval()
    model = SD3LRStreamTransformer2DModel.from_sd3(base).eval()
    inputs = transformer_inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).sample, base(**inputs).sample)
    torch.testing.assert_close(model.lr_stream[1].to_out_control.bias, base.transformer_blocks[1].attn.to_out[0].bias)


def test_gradient_checkpointing_gives_the_same_output_and_gradients():
    torch.manual_seed(0)
    model = SD3LRStreamTransformer2DModel(**TRANSFORMER_CONFIGS["tiny"])
    inputs = {**transformer_inputs(), "controlnet_image": torch.randn(2, 16, 8, 8)}
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.enable_gradient_checkpointing()
        model.zero_grad()
        output = model(**inputs).sample
        output.square().mean().backward()
        grads.append((output.detach(), model.transformer_blocks[0].attn.to_q.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


@pytest.mark.parametrize("conditioning", ["lr_stream", "controlnet"])
def test_flow_generator_shapes_and_flow_identities(conditioning):
    generator = build_flow_sr_generator(conditioning=conditioning)
    assert generator.prediction_type == "flow" and generator.conditioning == conditioning
    image_lr = torch.rand(2, 3, 8, 8)
    condition = generator.encode_condition(image_lr)
    assert condition.image_lr.shape == (2, 16, 16, 16)  # x4 then the VAE's /2 (tiny) -> (16, 16)
    sample = generator.sample(image_lr, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert sample.images.shape == (2, 3, 32, 32) and 0 <= sample.images.min() and sample.images.max() <= 1
    # x_sigma = (1 - sigma) x0 + sigma eps, v = eps - x0 and x0 = x_sigma - sigma v, for any sigma
    x0, noise = torch.randn(2, 16, 16, 16), torch.randn(2, 16, 16, 16)
    timesteps = torch.tensor([250, 900])
    noisy = generator.add_noise(x0, noise, timesteps)
    torch.testing.assert_close(noisy[1], 0.1 * x0[1] + 0.9 * noise[1])
    target = generator.training_target(x0, noise, timesteps)
    torch.testing.assert_close(target, noise - x0)
    torch.testing.assert_close(generator.predict_x0(target, timesteps, noisy), x0, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="multiples of 4"):  # x2 SR: 10 pixels, not a multiple of VAE x patch
        build_flow_sr_generator(conditioning=conditioning, scale=2).encode_condition(torch.rand(1, 3, 5, 5))


def test_flow_sde_log_prob_equals_the_gaussian_density_computed_by_hand():
    torch.manual_seed(0)
    sample, velocity, prev = torch.randn(3, 2, 4, 4, 4).unbind(0)
    for sigma, sigma_next in [(0.6, 0.4), (1.0, 0.8)]:
        policy_like = FlowSDEPolicy.__new__(FlowSDEPolicy)
        policy_like.sigmas, policy_like.noise_level = torch.tensor([sigma, sigma_next]), 0.7
        step = policy_like.step(velocity, 0, sample, prev_sample=prev)
        dt = sigma_next - sigma
        one_minus = 1 - sigma if sigma < 1 else 1 - sigma_next
        s = 0.7 * math.sqrt(sigma / one_minus)
        mean = sample * (1 + s * s * dt / (2 * sigma)) + velocity * (1 + s * s * (1 - sigma) / (2 * sigma)) * dt
        std = s * math.sqrt(-dt)
        density = -((prev - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
        torch.testing.assert_close(step.log_prob, density.mean(dim=(1, 2, 3)))
        torch.testing.assert_close(step.log_prob, torch.distributions.Normal(mean, std).log_prob(prev).mean((1, 2, 3)))
        assert step.std.flatten().tolist() == pytest.approx([std, std])


def test_generators_choose_their_stochastic_policy():
    flow = build_flow_sr_generator()
    policy = stochastic_policy(flow, num_inference_steps=4, eta=0.7)
    assert isinstance(policy, FlowSDEPolicy) and policy.noise_level == 0.7
    # the sigmas of the scheduler (shift 3), timesteps = sigma * 1000, ending at sigma 0
    assert policy.sigmas[0] == 1 and policy.sigmas[-1] == 0 and len(policy.timesteps) == 4
    torch.testing.assert_close(policy.timesteps, policy.sigmas[:-1] * 1000)
    flow.scheduler.set_timesteps(4)
    torch.testing.assert_close(policy.sigmas, flow.scheduler.sigmas)
    # per-sample step indices score stored steps; a sampled step has a finite log-prob
    step = policy.step(torch.randn(2, 16, 4, 4), torch.tensor([0, 3]), torch.randn(2, 16, 4, 4), prev_sample=None)
    assert torch.isfinite(step.log_prob).all() and step.std[0] != step.std[1]
    # every flow step is a policy action; the deterministic step is the scheduler's Euler step
    assert policy.stochastic == [True] * 4 and policy.stochastic_indices.tolist() == [0, 1, 2, 3]
    velocity, latents = torch.randn(2, 1, 16, 4, 4).unbind(0)
    flow.scheduler.set_timesteps(4)
    euler = flow.scheduler.step(velocity, flow.scheduler.timesteps[1], latents).prev_sample
    torch.testing.assert_close(policy.deterministic_step(velocity, 1, latents), euler)

    class DDPMLike:
        scheduler = type("S", (), {"config": {"prediction_type": "epsilon", "num_train_timesteps": 1000}})()

    assert isinstance(stochastic_policy(DDPMLike(), num_inference_steps=4, eta=1.0), DDIMPolicy)


def test_prompt_embeddings_are_read_from_the_cache_without_text_encoders(tmp_path):
    prompt_embeds, pooled = torch.randn(1, 7, 32), torch.randn(1, 16)
    cache = save_prompt_embeddings(tmp_path / "empty.safetensors", prompt_embeds, pooled, prompt="")
    # a model id that does not exist: nothing is loaded when the cache file is there
    loaded, loaded_pooled = cached_prompt_embeddings("no/such-model", "", cache_file=cache)
    assert torch.equal(loaded, prompt_embeds) and torch.equal(loaded_pooled, pooled)
    with pytest.raises(ValueError, match=r"\(1, L, D\)"):
        save_prompt_embeddings(tmp_path / "bad.safetensors", prompt_embeds[0], pooled)


def test_from_pretrained_detects_the_flow_checkpoint_and_loads_a_user_transformer_class(tmp_path):
    directory = save_tiny_flow_sr(tmp_path / "tiny-flow")
    assert detect_generator_type(str(directory)) == "flow"
    generator = load_generator(str(directory))
    assert isinstance(generator, FlowSRGenerator)
    assert isinstance(generator.transformer, SD3LRStreamTransformer2DModel)
    # a user's own transformer class ("module.py:Class"), as DiT4SR's code plugs in
    module = tmp_path / "my_dit.py"
    module.write_text(
        "from finpercep_hf.generators.sd3_lr_stream import SD3LRStreamTransformer2DModel\n\n\n"
        "class MyDiT(SD3LRStreamTransformer2DModel):\n    pass\n"
    )
    custom = FlowSRGenerator.from_pretrained(str(directory), transformer_class=f"{module}:MyDiT")
    assert type(custom.transformer).__name__ == "MyDiT"
    image_lr = torch.rand(1, 3, 8, 8)
    rng = torch.Generator().manual_seed(0)
    torch.testing.assert_close(
        custom.sample(image_lr, 2, generator=rng).images,
        generator.sample(image_lr, 2, generator=torch.Generator().manual_seed(0)).images,
    )
    controlnet_dir = save_tiny_flow_sr(tmp_path / "tiny-flow-cn", conditioning="controlnet")
    assert FlowSRGenerator.from_pretrained(str(controlnet_dir)).conditioning == "controlnet"


@pytest.mark.parametrize("conditioning", ["lr_stream", "controlnet"])
def test_lora_saved_in_diffusers_format_loads_into_the_sd3_pipeline_and_changes_its_output(tmp_path, conditioning):
    generator = build_flow_sr_generator(conditioning=conditioning)
    generator.add_lora(rank=4)
    with torch.no_grad():  # a trained LoRA: B != 0
        for name, parameter in generator.transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    path = generator.save_lora_weights(tmp_path / "lora")
    pipeline, (prompt_embeds, pooled) = build_flow_sr_pipeline(conditioning=conditioning)
    expected = StableDiffusion3Pipeline if conditioning == "lr_stream" else StableDiffusion3ControlNetPipeline
    assert isinstance(pipeline, expected)
    call = dict(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, height=32, width=32)
    call.update(num_inference_steps=2, guidance_scale=1.0, output_type="latent")
    if conditioning == "controlnet":
        call["control_image"] = torch.rand(1, 3, 32, 32)
    before = pipeline(**call, generator=torch.Generator().manual_seed(0)).images
    pipeline.load_lora_weights(str(path.parent))
    after = pipeline(**call, generator=torch.Generator().manual_seed(0)).images
    assert (after - before).abs().max() > 1e-3
    # the pipeline's transformer now computes what the generator's does
    inputs = transformer_inputs(1)
    with torch.no_grad():
        torch.testing.assert_close(pipeline.transformer(**inputs).sample, generator.transformer(**inputs).sample)
    # and the generator reads its own file back
    reloaded = build_flow_sr_generator(conditioning=conditioning)
    reloaded.add_lora(rank=4)
    reloaded.load_lora_weights(tmp_path / "lora")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.transformer(**inputs).sample, generator.transformer(**inputs).sample)
