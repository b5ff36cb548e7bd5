"""Benchmark mirror of the SD 1.5 UNet2DConditionModel forward (diffusers layout and math, written
out for PyTorch without diffusers): random weights, batch 2, 4x64x64 latents, 77x768 condition,
fp32, no_grad. Prints one JSON line: forward median over the runs after the warm-up runs, and peak RSS.
    python3 bench/torch/unet_sd15.py [runs] [warmup] [threads]"""
import json
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = (320, 640, 1280, 1280)
HEADS = 8
CROSS_DIM = 768
GROUPS = 32
LAYERS = 2
TIME_DIM = CHANNELS[0] * 4


class Resnet(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(TIME_DIM, cout)
        self.norm2 = nn.GroupNorm(GROUPS, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    def __init__(self, dim, kv_dim):
        super().__init__()
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x, context):
        b, t, c = x.shape
        d = c // HEADS
        split = lambda y: y.reshape(b, -1, HEADS, d).permute(0, 2, 1, 3).reshape(b * HEADS, -1, d)
        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        # diffusers' AttnProcessor on torch < 2: baddbmm scores, softmax, bmm.
        scores = torch.baddbmm(torch.empty(q.shape[0], q.shape[1], k.shape[1]), q, k.transpose(1, 2), beta=0, alpha=d**-0.5)
        out = torch.bmm(scores.softmax(dim=-1), v).reshape(b, HEADS, t, d).permute(0, 2, 1, 3).reshape(b, t, c)
        return self.to_out[0](out)


class TransformerBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim)
        self.attn2 = Attention(dim, CROSS_DIM)
        self.geglu = nn.Linear(dim, dim * 8)
        self.out = nn.Linear(dim * 4, dim)

    def forward(self, x, context):
        h = self.norm1(x)
        x = self.attn1(h, h) + x
        x = self.attn2(self.norm2(x), context) + x
        hidden, gate = self.geglu(self.norm3(x)).chunk(2, dim=-1)
        return self.out(hidden * F.gelu(gate)) + x


class Transformer2D(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.block = TransformerBlock(dim)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        tokens = self.block(tokens, context)
        return self.proj_out(tokens.reshape(b, h, w, c).permute(0, 3, 1, 2)) + x


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(4, CHANNELS[0], 3, padding=1)
        self.linear_1 = nn.Linear(CHANNELS[0], TIME_DIM)
        self.linear_2 = nn.Linear(TIME_DIM, TIME_DIM)
        self.down = nn.ModuleList()
        for i, cout in enumerate(CHANNELS):
            cin = CHANNELS[max(i - 1, 0)]
            block = nn.Module()
            block.resnets = nn.ModuleList([Resnet(cin if j == 0 else cout, cout) for j in range(LAYERS)])
            block.attentions = nn.ModuleList([Transformer2D(cout) for _ in range(LAYERS)]) if i < 3 else None
            block.down = nn.Conv2d(cout, cout, 3, stride=2, padding=1) if i < 3 else None
            self.down.append(block)
        self.mid_resnets = nn.ModuleList([Resnet(CHANNELS[-1], CHANNELS[-1]) for _ in range(2)])
        self.mid_attention = Transformer2D(CHANNELS[-1])
        self.up = nn.ModuleList()
        rev = list(reversed(CHANNELS))
        for i, cout in enumerate(rev):
            prev = rev[max(i - 1, 0)]
            cin = rev[min(i + 1, 3)]
            block = nn.Module()
            block.resnets = nn.ModuleList(
                [Resnet((prev if j == 0 else cout) + (cin if j == LAYERS else cout), cout) for j in range(LAYERS + 1)]
            )
            block.attentions = nn.ModuleList([Transformer2D(cout) for _ in range(LAYERS + 1)]) if i > 0 else None
            block.up = nn.Conv2d(cout, cout, 3, padding=1) if i < 3 else None
            self.up.append(block)
        self.conv_norm_out = nn.GroupNorm(GROUPS, CHANNELS[0], eps=1e-5)
        self.conv_out = nn.Conv2d(CHANNELS[0], 4, 3, padding=1)

    def forward(self, sample, timestep, context):
        half = CHANNELS[0] // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        angles = timestep.float()[:, None] * freqs[None]
        temb = self.linear_2(F.silu(self.linear_1(torch.cat([angles.cos(), angles.sin()], dim=-1))))
        h = self.conv_in(sample)
        skips = [h]
        for block in self.down:
            for j, resnet in enumerate(block.resnets):
                h = resnet(h, temb)
                if block.attentions is not None:
                    h = block.attentions[j](h, context)
                skips.append(h)
            if block.down is not None:
                h = block.down(h)
                skips.append(h)
        h = self.mid_resnets[1](self.mid_attention(self.mid_resnets[0](h, temb), context), temb)
        for block in self.up:
            for j, resnet in enumerate(block.resnets):
                h = resnet(torch.cat([h, skips.pop()], dim=1), temb)
                if block.attentions is not None:
                    h = block.attentions[j](h, context)
            if block.up is not None:
                h = block.up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    warmup = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    if len(sys.argv) > 3:
        torch.set_num_threads(int(sys.argv[3]))
    torch.manual_seed(0)
    model = UNet().eval()
    parameters = sum(p.numel() for p in model.parameters())
    sample = torch.randn(2, 4, 64, 64)
    timestep = torch.full((2,), 981, dtype=torch.int64)
    context = torch.randn(2, 77, CROSS_DIM)
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
