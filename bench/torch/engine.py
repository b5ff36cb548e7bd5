"""PyTorch side of the engine benchmarks (bench/engine.ts): trains the same model on the same batch
with the same AdamW settings and reports the median step time.

usage: engine.py CONFIG_JSON INPUTS.safetensors
CONFIG_JSON: {"model": {...}, "optimizer": {...}, "warmup": n, "steps": n, "threads": n}
Prints one JSON object: {"torch_ms": median step, "first_loss": loss of the first step, "blas": …}.
"""
import json
import statistics
import sys
import time

import torch

from models import adamw, build, load, read_safetensors


def blas_library():
    """Which BLAS the process loaded: Debian's torch uses whatever libblas.so.3 the system selects,
    and the reference BLAS is an order of magnitude slower than OpenBLAS."""
    try:
        with open("/proc/self/maps") as maps:
            mapped = maps.read()
    except OSError:
        return "unknown"
    if "openblas" in mapped:
        return "openblas"
    return "reference" if "libblas.so" in mapped else "unknown"


def time_steps(step, warmup, steps):
    """Runs `step` (returns the loss) warmup times, then times `steps` more: (median ms, first loss, last loss)."""
    first_loss = step()
    for _ in range(warmup - 1):
        step()
    times = []
    last_loss = first_loss
    for _ in range(steps):
        started = time.perf_counter()
        last_loss = step()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), first_loss, last_loss


def main():
    config = json.loads(sys.argv[1])
    torch.set_num_threads(config["threads"])
    tensors = read_safetensors(sys.argv[2])
    model = load(build(config["model"]), tensors, torch.float32)
    batch = {name: tensors[name] for name in ("x", "target", "labels") if name in tensors}
    optimizer = adamw(model, config["optimizer"])

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        loss.backward()
        optimizer.step()
        return loss.item()

    torch_ms, first_loss, _ = time_steps(step, config["warmup"], config["steps"])
    print(json.dumps({"torch_ms": torch_ms, "first_loss": first_loss, "blas": blas_library()}))


if __name__ == "__main__":
    main()
