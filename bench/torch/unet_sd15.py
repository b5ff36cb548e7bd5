"""Benchmark of the SD 1.5 UNet2DConditionModel forward in PyTorch, on the config-driven mirror
(unet.py) of src/models/configs/unet-sd15.json: random weights, batch 2, 4x64x64 latents, 77x768
condition, fp32, no_grad. Prints one JSON line: forward median over the runs after the warm-up runs, and peak RSS.
    python3 bench/torch/unet_sd15.py [runs] [warmup] [threads]"""
import json
import resource
import sys
import time
from pathlib import Path

import torch

from unet import UNet, parameter_count

# The same config.json our side reads (bench/models-unet.ts), so both build one architecture.
CONFIG_PATH = Path(__file__).resolve().parents[2] / "src" / "models" / "configs" / "unet-sd15.json"


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    warmup = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    if len(sys.argv) > 3:
        torch.set_num_threads(int(sys.argv[3]))
    torch.manual_seed(0)
    config = json.loads(CONFIG_PATH.read_text())
    model = UNet(config).eval()
    parameters = parameter_count(model)
    sample = torch.randn(2, 4, 64, 64)
    timestep = torch.full((2,), 981, dtype=torch.int64)
    context = torch.randn(2, 77, config["cross_attention_dim"])
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            model(sample, timestep, context)
        for _ in range(runs):
            started = time.perf_counter()
            out = model(sample, timestep, context)
            times.append((time.perf_counter() - started) * 1000)
    assert torch.isfinite(out).all()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({"parameters": parameters, "forwardMs": round(sorted(times)[len(times) // 2]), "forwardRunsMs": [round(t) for t in times], "peakRssMiB": peak, "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
