"""Float64 PyTorch reference for test/graph/torch-parity.test.ts.

usage: parity.py CONFIG_JSON INPUTS.safetensors OUTPUTS.safetensors

CONFIG_JSON.mode "gradients": loss = sum(model(input) * R); writes `output`, `grad.input` and
`grad.<parameter key>`. Mode "adamw": runs CONFIG_JSON.steps AdamW steps on the model's own
loss with the batch in INPUTS and writes the parameters after them under their keys.
"""
import json
import sys

import torch

from models import adamw, build, load, read_safetensors, write_safetensors


def gradients(model, inputs):
    x = inputs["input"].double().requires_grad_()
    output = model(x)
    (output * inputs["R"].double()).sum().backward()
    results = {"output": output, "grad.input": x.grad}
    results.update({f"grad.{key}": parameter.grad for key, parameter in model.named_parameters()})
    return results


def adamw_steps(model, inputs, config):
    batch = {name: (tensor.double() if tensor.is_floating_point() else tensor) for name, tensor in inputs.items() if name in ("x", "target", "labels")}
    optimizer = adamw(model, config["optimizer"])
    for _ in range(config["steps"]):
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    return dict(model.named_parameters())


def main():
    config = json.loads(sys.argv[1])
    inputs = read_safetensors(sys.argv[2])
    model = load(build(config["model"]), inputs, torch.float64)
    results = gradients(model, inputs) if config["mode"] == "gradients" else adamw_steps(model, inputs, config)
    write_safetensors(sys.argv[3], results)


if __name__ == "__main__":
    main()
