"""PyTorch side of `npm run bench -- train` (bench/train.ts): one training step of the U-Net of a
training-stage config (its `model` section, on the mirror in unet.py) with that config's AdamW
betas / weight decay, its peak learning rate held constant and its gradient clipping, on a batch of
pre-noised latents, timesteps, text hidden states and the target noise (ε-prediction MSE loss).

usage: train.py CONFIG.json BATCH_SIZE SETTINGS_JSON [INPUTS.safetensors]
SETTINGS_JSON: {"warmup": n, "steps": n, "threads": n, "tokens": n}
INPUTS: our parameters (diffusers keys) and batch (noisy_latents, timesteps, encoder_hidden_states,
noise), so that both sides train the same weights on the same data; without it, random ones.
Prints one JSON object: {"torch_ms": median step, "first_loss", "last_loss" (of the last timed step, after
every earlier update), "parameters", "threads", "blas", "torch"}.
"""
import json
import sys

import torch
import torch.nn.functional as F

from engine import blas_library, time_steps
from models import read_safetensors
from unet import UNet, parameter_count, resolve_config

BATCH_KEYS = ("noisy_latents", "timesteps", "encoder_hidden_states", "noise")


def no_weight_decay(key):
    """The U-Net stage's exemption (src/train/unet.ts noWeightDecay): biases and norm scales."""
    return key.endswith(".bias") or "norm" in key


def random_batch(model_config, size, tokens):
    """A batch of the shapes bench/train.ts feeds, for running this script on its own."""
    config = resolve_config(model_config)
    side = model_config["sample_size"]  # the latent side
    latents = (size, config["in_channels"], side, side)
    return {
        "noisy_latents": torch.randn(latents),
        "timesteps": torch.randint(0, 1000, (size,), dtype=torch.int64),
        "encoder_hidden_states": torch.randn(size, tokens, config["cross_attention_dim"][0]),
        "noise": torch.randn(size, config["out_channels"], side, side),
    }


def main():
    with open(sys.argv[1]) as handle:
        stage = json.load(handle)
    size, settings = int(sys.argv[2]), json.loads(sys.argv[3])
    torch.set_num_threads(settings["threads"])
    torch.manual_seed(0)
    model = UNet(stage["model"])
    if len(sys.argv) > 4:
        tensors = read_safetensors(sys.argv[4])
        model.load_state_dict({key: tensors[key] for key in model.state_dict()}, strict=True)
        batch = {key: tensors[key] for key in BATCH_KEYS}
    else:
        batch = random_batch(stage["model"], size, settings["tokens"])
    if batch["noisy_latents"].shape[0] != size:
        raise ValueError(f"the inputs hold a batch of {batch['noisy_latents'].shape[0]}, not {size}")

    optimizer_config = stage["optimizer"]
    if optimizer_config["kind"] != "adamw":
        raise ValueError(f"optimizer {optimizer_config['kind']} is not benchmarked")
    named = list(model.named_parameters())
    weight_decay = optimizer_config.get("weightDecay", 0.01)
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for key, p in named if not no_weight_decay(key)], "weight_decay": weight_decay},
            {"params": [p for key, p in named if no_weight_decay(key)], "weight_decay": 0.0},
        ],
        lr=stage["schedule"]["learningRate"],
        betas=(optimizer_config.get("beta1", 0.9), optimizer_config.get("beta2", 0.999)),
        eps=optimizer_config.get("eps", 1e-8),
    )
    max_grad_norm = stage.get("maxGradNorm")
    parameters = [p for _, p in named]

    def step():
        optimizer.zero_grad(set_to_none=True)
        prediction = model(batch["noisy_latents"], batch["timesteps"], batch["encoder_hidden_states"])
        loss = F.mse_loss(prediction, batch["noise"])
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
        optimizer.step()
        return loss.item()

    torch_ms, first_loss, last_loss = time_steps(step, settings["warmup"], settings["steps"])
    print(json.dumps({
        "torch_ms": torch_ms, "first_loss": first_loss, "last_loss": last_loss, "parameters": parameter_count(model),
        "threads": torch.get_num_threads(), "blas": blas_library(), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
