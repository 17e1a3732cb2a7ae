#!/usr/bin/python3
"""An independent, readable PyTorch reference of Hugging Face's LlamaForCausalLM forward pass.

It shares no code with the C++ library nor with tools/make_llama_fixture.py: config.json and
the safetensors file(s) are read by the small parser below.

All arithmetic is float64. Weights are converted exactly from their stored dtype (F32, F16,
BF16 all embed exactly in float64), so this reference is more exact than the float32 code it
checks, and a difference at 1e-4 is the code under test's, not the reference's rounding.

    logits(model_dir, ids) -> np.ndarray [len(ids), vocab]   (float64)

CLI:  llama_ref.py MODEL_DIR --ids 1,2,3 --out logits.f32   (raw little-endian float32,
row-major [len(ids)][vocab])
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch

DT = torch.float64


# ---------------------------------------------------------------- safetensors reading


def _decode(raw: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    """Stored bytes -> float64 array, exactly."""
    if dtype == "F32":
        a = np.frombuffer(raw, dtype="<f4")
    elif dtype == "F16":
        a = np.frombuffer(raw, dtype="<f2")
    elif dtype == "BF16":
        # bf16 is the high half of a float32: shift the 16 bits up and reinterpret.
        a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        raise ValueError(f"unsupported safetensors dtype {dtype}")
    return a.astype(np.float64).reshape(shape)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[name] = _decode(body[begin:end], info["dtype"], info["shape"])
    return out


def read_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for f in files:
        weights.update(read_safetensors(model_dir / f))
    return {k: torch.from_numpy(v) for k, v in weights.items()}


# ---------------------------------------------------------------- the model


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(n: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """HF convention: frequencies for the first half repeated for the second half."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=DT) / head_dim))
    freqs = torch.outer(torch.arange(n, dtype=DT), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # [n, head_dim]
    return emb.cos(), emb.sin()


class LlamaRef:
    def __init__(self, model_dir: str | Path):
        model_dir = Path(model_dir)
        c = json.loads((model_dir / "config.json").read_text())
        self.hidden = c["hidden_size"]
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        self.vocab = c["vocab_size"]
        self.w = read_weights(model_dir)
        # Tied: HF uses the embedding even when a (copied) lm_head.weight is in the file.
        tied = c.get("tie_word_embeddings", False)
        self.lm_head = self.w["model.embed_tokens.weight" if tied else "lm_head.weight"]

    def attention(self, x: torch.Tensor, i: int, cos: torch.Tensor, sin: torch.Tensor):
        p = f"model.layers.{i}.self_attn."
        n = x.shape[0]
        # [n, heads, head_dim] -> [heads, n, head_dim]
        q = (x @ self.w[p + "q_proj.weight"].T).view(n, self.heads, self.head_dim).transpose(0, 1)
        k = (x @ self.w[p + "k_proj.weight"].T).view(n, self.kv_heads, self.head_dim)
        v = (x @ self.w[p + "v_proj.weight"].T).view(n, self.kv_heads, self.head_dim)
        k, v = k.transpose(0, 1), v.transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # Grouped-query attention: query head h reads kv head h // (heads / kv_heads).
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=0)
        v = v.repeat_interleave(group, dim=0)
        scores = q @ k.transpose(1, 2) / self.head_dim**0.5  # [heads, n, n]
        causal = torch.ones(n, n, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v  # [heads, n, head_dim]
        out = out.transpose(0, 1).reshape(n, self.heads * self.head_dim)
        return out @ self.w[p + "o_proj.weight"].T

    def mlp(self, x: torch.Tensor, i: int) -> torch.Tensor:
        p = f"model.layers.{i}.mlp."
        gate = torch.nn.functional.silu(x @ self.w[p + "gate_proj.weight"].T)
        up = x @ self.w[p + "up_proj.weight"].T
        return (gate * up) @ self.w[p + "down_proj.weight"].T

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits [len(ids), vocab] of one causal forward over ids from position 0."""
        ids_t = torch.tensor(ids, dtype=torch.long)
        x = self.w["model.embed_tokens.weight"][ids_t]
        cos, sin = rope_cos_sin(len(ids), self.head_dim, self.theta)
        for i in range(self.layers):
            p = f"model.layers.{i}."
            h = rms_norm(x, self.w[p + "input_layernorm.weight"], self.eps)
            x = x + self.attention(h, i, cos, sin)
            h = rms_norm(x, self.w[p + "post_attention_layernorm.weight"], self.eps)
            x = x + self.mlp(h, i)
        x = rms_norm(x, self.w["model.norm.weight"], self.eps)
        return (x @ self.lm_head.T).numpy()

    def greedy(self, prompt: list[int], steps: int) -> list[int]:
        """prompt + `steps` greedy ids (a full forward per step, no cache: slow, plainly right)."""
        ids = list(prompt)
        for _ in range(steps):
            ids.append(int(np.argmax(self.logits(ids)[-1])))
        return ids


def logits(model_dir: str | Path, ids: list[int]) -> np.ndarray:
    return LlamaRef(model_dir).logits(list(ids))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="HF LLaMA reference forward (float64)")
    ap.add_argument("model_dir")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--out", required=True, help="raw little-endian float32 [len(ids)][vocab]")
    a = ap.parse_args(argv)
    ids = [int(t) for t in a.ids.split(",") if t.strip()]
    out = logits(a.model_dir, ids)
    Path(a.out).write_bytes(out.astype("<f4").tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
