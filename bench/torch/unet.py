"""PyTorch mirror of diffusers' UNet2DConditionModel (SD 1.x/2.x family), built from a diffusers
config.json dict and written out without diffusers (Debian ships torch, not diffusers). Module
paths are diffusers' checkpoint keys, so our safetensors weights load with load_state_dict(strict)
and a first loss can be compared. Used by the SD 1.5 forward benchmark (unet_sd15.py) and the
U-Net-mini training-step benchmark (train.py).

Math as diffusers runs it on torch < 2: baddbmm attention scores (AttnProcessor), exact-GELU GEGLU,
GroupNorm eps 1e-6 in Transformer2DModel, [cos, sin] timestep features when flip_sin_to_cos."""
import math

import torch
import torch.nn.functional as F
from torch import nn

# diffusers' defaults for the keys SD 1.x config files leave out.
DEFAULTS = {
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1280,
    "transformer_layers_per_block": 1,
    # SD 1.x/2.x configs name the number of heads attention_head_dim (diffusers' naming quirk).
    "attention_head_dim": 8,
    "use_linear_projection": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "time_embedding_dim": None,
}
# Keys whose non-default values change the architecture and are not mirrored here.
UNSUPPORTED = {
    "only_cross_attention": False, "mid_block_type": "UNetMidBlock2DCrossAttn", "act_fn": "silu", "dropout": 0,
    "num_attention_heads": None, "class_embed_type": None, "addition_embed_type": None, "encoder_hid_dim": None,
    "resnet_time_scale_shift": "default", "time_embedding_type": "positional", "dual_cross_attention": False,
}


def resolve_config(raw):
    """diffusers config dict -> every key this mirror reads, per-block values as lists."""
    for key, default in UNSUPPORTED.items():
        if raw.get(key, default) not in (default, None):
            raise ValueError(f"{key}={raw[key]!r} is not mirrored (SD 1.x/2.x U-Nets only)")
    config = {**DEFAULTS, **{key: raw[key] for key in DEFAULTS if key in raw}}
    blocks = len(config["block_out_channels"])
    for key in ("layers_per_block", "cross_attention_dim", "transformer_layers_per_block", "attention_head_dim"):
        value = config[key]
        config[key] = list(value) if isinstance(value, (list, tuple)) else [value] * blocks
        if len(config[key]) != blocks:
            raise ValueError(f"{key} has {len(config[key])} entries for {blocks} blocks")
    return config


def timestep_features(timestep, dim, flip_sin_to_cos, freq_shift):
    """diffusers get_timestep_embedding: (B) timesteps -> (B, dim) sinusoidal features."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - freq_shift)
    angles = timestep.float()[:, None] * torch.exp(exponent)[None]  # (B, half)
    features = torch.cat([angles.cos(), angles.sin()] if flip_sin_to_cos else [angles.sin(), angles.cos()], dim=-1)
    return F.pad(features, (0, 1)) if dim % 2 else features


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, time_dim, groups, eps, output_scale_factor=1):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(time_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.output_scale_factor = output_scale_factor

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]  # (B, C_out, 1, 1) over H, W
        h = self.conv2(F.silu(self.norm2(h)))
        out = (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h
        return out if self.output_scale_factor == 1 else out / self.output_scale_factor


class Attention(nn.Module):
    def __init__(self, dim, kv_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])  # diffusers' [Linear, Dropout]: key to_out.0

    def forward(self, x, context):
        b, t, c = x.shape
        d = c // self.heads
        # (B, T|S, heads·D) -> (B·heads, T|S, D)
        split = lambda y: y.reshape(b, -1, self.heads, d).permute(0, 2, 1, 3).reshape(b * self.heads, -1, d)
        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        # diffusers' AttnProcessor on torch < 2: baddbmm scores, softmax, bmm.
        scores = torch.baddbmm(torch.empty(q.shape[0], q.shape[1], k.shape[1]), q, k.transpose(1, 2), beta=0, alpha=d**-0.5)
        # (B·heads, T, D) -> (B, T, heads·D)
        out = torch.bmm(scores.softmax(dim=-1), v).reshape(b, self.heads, t, d).permute(0, 2, 1, 3).reshape(b, t, c)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        # diffusers' [GEGLU, Dropout, Linear]: keys net.0.proj and net.2.
        self.net = nn.ModuleList([GEGLU(dim, dim * 4), nn.Identity(), nn.Linear(dim * 4, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, cross_dim):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, heads)
        self.attn2 = Attention(dim, cross_dim, heads)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        h = self.norm1(x)
        x = self.attn1(h, h) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    def __init__(self, dim, heads, cross_dim, layers, groups, linear_projection):
        super().__init__()
        self.linear_projection = linear_projection
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim) if linear_projection else nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(dim, heads, cross_dim) for _ in range(layers)])
        self.proj_out = nn.Linear(dim, dim) if linear_projection else nn.Conv2d(dim, dim, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        to_tokens = lambda y: y.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, C, H, W) -> (B, H·W, C)
        to_image = lambda y: y.reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, H·W, C) -> (B, C, H, W)
        normed = self.norm(x)
        tokens = self.proj_in(to_tokens(normed)) if self.linear_projection else to_tokens(self.proj_in(normed))
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        out = to_image(self.proj_out(tokens)) if self.linear_projection else self.proj_out(to_image(tokens))
        return out + x


class Downsample2D(nn.Module):
    def __init__(self, channels, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.padding == 0 else x)


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """UNet2DConditionModel from a diffusers config dict; state_dict keys are diffusers'."""

    def __init__(self, raw_config):
        super().__init__()
        config = self.config = resolve_config(raw_config)
        channels = config["block_out_channels"]
        blocks = len(channels)
        groups, eps = config["norm_num_groups"], config["norm_eps"]
        time_dim = config["time_embedding_dim"] or channels[0] * 4
        resnet = lambda cin, cout, scale=1: ResnetBlock2D(cin, cout, time_dim, groups, eps, scale)

        def transformer(block, dim):
            return Transformer2DModel(dim, config["attention_head_dim"][block], config["cross_attention_dim"][block],
                                      config["transformer_layers_per_block"][block], groups, config["use_linear_projection"])

        k_in, k_out = config["conv_in_kernel"], config["conv_out_kernel"]
        self.conv_in = nn.Conv2d(config["in_channels"], channels[0], k_in, padding=(k_in - 1) // 2)
        self.time_embedding = TimestepEmbedding(channels[0], time_dim)
        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(config["down_block_types"]):
            if kind not in ("CrossAttnDownBlock2D", "DownBlock2D"):
                raise ValueError(f"down block {kind} is not mirrored")
            cin, cout, layers = channels[max(i - 1, 0)], channels[i], config["layers_per_block"][i]
            block = nn.Module()
            block.resnets = nn.ModuleList([resnet(cin if j == 0 else cout, cout) for j in range(layers)])
            block.attentions = nn.ModuleList([transformer(i, cout) for _ in range(layers)]) if kind == "CrossAttnDownBlock2D" else None
            block.downsamplers = nn.ModuleList([Downsample2D(cout, config["downsample_padding"])]) if i < blocks - 1 else None
            self.down_blocks.append(block)
        # UNetMidBlock2DCrossAttn: resnet, attention, resnet (heads and cross dim of the last block).
        self.mid_block = nn.Module()
        self.mid_block.resnets = nn.ModuleList([resnet(channels[-1], channels[-1], config["mid_block_scale_factor"]) for _ in range(2)])
        self.mid_block.attentions = nn.ModuleList([transformer(blocks - 1, channels[-1])])
        self.up_blocks = nn.ModuleList()
        for i, kind in enumerate(config["up_block_types"]):
            if kind not in ("CrossAttnUpBlock2D", "UpBlock2D"):
                raise ValueError(f"up block {kind} is not mirrored")
            mirrored = blocks - 1 - i  # up block i mirrors down block blocks-1-i
            cout, prev, skip_in = channels[mirrored], channels[min(mirrored + 1, blocks - 1)], channels[max(mirrored - 1, 0)]
            layers = config["layers_per_block"][mirrored] + 1
            block = nn.Module()
            # Resnet j sees the running hidden state (prev for j = 0) plus one skip (skip_in for the last).
            block.resnets = nn.ModuleList(
                [resnet((prev if j == 0 else cout) + (skip_in if j == layers - 1 else cout), cout) for j in range(layers)]
            )
            block.attentions = nn.ModuleList([transformer(mirrored, cout) for _ in range(layers)]) if kind == "CrossAttnUpBlock2D" else None
            block.upsamplers = nn.ModuleList([Upsample2D(cout)]) if i < blocks - 1 else None
            self.up_blocks.append(block)
        self.conv_norm_out = nn.GroupNorm(groups, channels[0], eps=eps)
        self.conv_out = nn.Conv2d(channels[0], config["out_channels"], k_out, padding=(k_out - 1) // 2)

    def forward(self, sample, timestep, context):
        """sample (B, C_in, H, W), timestep 0-d or (B), context (B, S, cross_dim) -> (B, C_out, H, W)."""
        config = self.config
        timestep = timestep.reshape(-1).expand(sample.shape[0])  # (B), as diffusers' expand does
        features = timestep_features(timestep, config["block_out_channels"][0], config["flip_sin_to_cos"], config["freq_shift"])
        temb = self.time_embedding(features)
        h = self.conv_in(2 * sample - 1 if config["center_input_sample"] else sample)
        skips = [h]
        for block in self.down_blocks:
            for j, resnet in enumerate(block.resnets):
                h = resnet(h, temb)
                if block.attentions is not None:
                    h = block.attentions[j](h, context)
                skips.append(h)
            if block.downsamplers is not None:
                h = block.downsamplers[0](h)
                skips.append(h)
        mid = self.mid_block
        h = mid.resnets[1](mid.attentions[0](mid.resnets[0](h, temb), context), temb)
        for block in self.up_blocks:
            for j, resnet in enumerate(block.resnets):
                h = resnet(torch.cat([h, skips.pop()], dim=1), temb)  # (B, C_hidden + C_skip, H, W)
                if block.attentions is not None:
                    h = block.attentions[j](h, context)
            if block.upsamplers is not None:
                h = block.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())
