"""Benchmark of the SD 1.5 UNet2DConditionModel forward in PyTorch, on the config-driven mirror
(unet.py) of src/models/configs/unet-sd15.json: random weights, batch 2, 4x64x64 latents, 77x768
condition, no_grad. Prints one JSON line: forward median over the runs after the warm-up runs, and peak RSS.
On CUDA the weights and inputs are cast to the dtype (float16: diffusers' usual GPU precision), each run
ends with a device synchronisation, and the peak is the device's allocated memory.
    python3 bench/torch/unet_sd15.py [runs] [warmup] [threads] [cpu|cuda] [float32|float16]"""
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
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    dtype = {"float32": torch.float32, "float16": torch.float16}[sys.argv[5] if len(sys.argv) > 5 else "float32"]
    if device == "cpu" and dtype != torch.float32:
        raise SystemExit("float16 is measured on cuda only")
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"cuda was asked for, but torch {torch.__version__} sees no CUDA device")
    if cuda:
        # fp32 means fp32: TF32 matmuls would be a third precision.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    config = json.loads(CONFIG_PATH.read_text())
    model = UNet(config).eval().to(device=device, dtype=dtype)
    parameters = parameter_count(model)
    sample = torch.randn(2, 4, 64, 64).to(device=device, dtype=dtype)
    timestep = torch.full((2,), 981, dtype=torch.int64, device=device)
    context = torch.randn(2, 77, config["cross_attention_dim"]).to(device=device, dtype=dtype)
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            model(sample, timestep, context)
        for _ in range(runs):
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            out = model(sample, timestep, context)
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - started) * 1000)
    assert torch.isfinite(out).all()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    result = {"parameters": parameters, "forwardMs": round(sorted(times)[len(times) // 2], 2), "forwardRunsMs": [round(t, 2) for t in times], "peakRssMiB": peak, "threads": torch.get_num_threads(), "torch": torch.__version__, "device": device, "dtype": str(dtype).removeprefix("torch.")}
    if cuda:
        result["gpu"] = torch.cuda.get_device_name()
        result["peakDeviceMiB"] = torch.cuda.max_memory_allocated() // 2**20
    print(json.dumps(result))


if __name__ == "__main__":
    main()
