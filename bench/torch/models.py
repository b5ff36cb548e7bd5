"""PyTorch twins of bench/engine-models.ts (same module names, so state dicts map 1:1), their
synthetic-task losses, and a dependency-free safetensors reader/writer shared by parity.py and
engine.py."""
import json
import math
import struct

import torch
import torch.nn.functional as F
from torch import nn

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}
CODES = {dtype: code for code, dtype in DTYPES.items()}


def read_safetensors(path):
    """Every tensor of a safetensors file, by name (copies, so they own their memory)."""
    with open(path, "rb") as handle:
        blob = handle.read()
    (header_length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_length])
    data = bytearray(blob[8 + header_length :])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        flat = torch.frombuffer(data, dtype=dtype, count=(end - begin) // torch.tensor([], dtype=dtype).element_size(), offset=begin)
        tensors[name] = flat.reshape(info["shape"]).clone()
    return tensors


def write_safetensors(path, tensors):
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        raw = tensor.numpy().tobytes()
        header[name] = {"dtype": CODES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for chunk in chunks:
            handle.write(chunk)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features, out_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))

    def loss(self, batch):
        return F.mse_loss(self(batch["x"]), batch["target"])


class ConvBlock(nn.Module):
    def __init__(self, channels, groups=32):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels, eps=1e-6)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels, eps=1e-6)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        hidden = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(hidden)))

    def loss(self, batch):
        return F.mse_loss(self(batch["x"]), batch["target"])


class SelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):
        batch, tokens, width = x.shape
        head_dim = width // self.heads

        def split_heads(projected):  # (B, T, E) -> (B, H, T, D)
            return projected.reshape(batch, tokens, self.heads, head_dim).transpose(1, 2)

        query, key, value = split_heads(self.q_proj(x)), split_heads(self.k_proj(x)), split_heads(self.v_proj(x))
        scores = (query * (1 / math.sqrt(head_dim))) @ key.transpose(-1, -2)  # (B, H, T, T)
        attended = scores.softmax(-1) @ value  # (B, H, T, D)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, tokens, width))


class TransformerBlock(nn.Module):
    def __init__(self, width, heads, mlp_width):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, mlp_width, width)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def loss(self, batch):
        logits = self(batch["x"])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1))


def build(config):
    """The model a config from bench/engine-models.ts describes."""
    kind = config["kind"]
    if kind == "mlp":
        return Mlp(config["inFeatures"], config["hiddenFeatures"], config["outFeatures"])
    if kind == "conv":
        return ConvBlock(config["channels"], config["groups"])
    if kind == "transformer":
        return TransformerBlock(config["width"], config["heads"], config["mlpWidth"])
    raise ValueError(f"unknown model kind {kind}")


def load(model, tensors, dtype):
    """Copies the tensors named like the model's parameters into it, converted to dtype."""
    model.to(dtype)
    state = {key: tensors[key].to(dtype) for key in model.state_dict()}
    model.load_state_dict(state, strict=True)
    return model


def adamw(model, config):
    return torch.optim.AdamW(
        model.parameters(),
        lr=config["learningRate"],
        betas=(config["beta1"], config["beta2"]),
        eps=config["eps"],
        weight_decay=config["weightDecay"],
    )
