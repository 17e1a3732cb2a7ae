#!/usr/bin/python3
"""Float64 reference of a LLaMA model with PEFT LoRA adapters (unmerged or merged).

Builds on llama_ref.py (which it does not change) and shares no code with the C++ library nor
with tools/make_peft_adapter.py. It reads an adapter directory as PEFT's
PeftModel.from_pretrained does and applies PEFT's LoraLayer semantics:

  * which modules are adapted follows the config: target_modules as a list (the module name is,
    or ends with ".<entry>"), or as a string (re.fullmatch); layers_to_transform (layer index
    taken with layers_pattern, or r".*\\.[^.]*\\.(\\d+)\\." when it is null). Every adapted
    module must have lora_A [r, in] and lora_B [out, r] in the file, and the file must hold
    no LoRA weights for other modules (PEFT would leave such a module at its init, B = 0, or
    drop the weights; a fixture that did either would be a broken fixture);
  * r and lora_alpha per module from rank_pattern / alpha_pattern: the first key, in file
    order, for which re.match(rf"(.*\\.)?{key}$", module_name) holds;
  * scaling s = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora;
  * y = W x + sum over adapters of user_scale * s * B (A x)   (unmerged), or
    y = (W + sum user_scale * s * B A) x                      (merged=True);
  * modules_to_save: base_model.model.<module>.weight replaces lm_head / model.embed_tokens
    whole (the user scale does not apply to it);
  * fan_in_fan_out and bias change nothing for LLaMA (nn.Linear without biases: PEFT warns and
    resets fan_in_fan_out, and has no bias to train or save); lora_dropout is off at inference.

Options PEFT has that this reference does not model are rejected (use_dora, other peft_types,
layer_replication, lora_bias, a tied model with a replaced lm_head or embedding).

    logits(model_dir, ids, adapters=[(adapter_dir, user_scale), ...], merged=False)
        -> np.ndarray [len(ids), vocab] (float64)

CLI:  lora_ref.py MODEL_DIR --ids 1,2,3 --adapter DIR[:SCALE] ... [--merged] --out logits.f32
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_ref  # noqa: E402
from llama_ref import DT, LlamaRef, rotate_half  # noqa: E402

PREFIX = "base_model.model."
LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.(?P<adapter>[^.]+))?\.weight$")
SAVED_KEY = re.compile(r"^(?P<module>.+?)(?:\.modules_to_save\.(?P<adapter>[^.]+))?\.weight$")
DEFAULT_LAYER_RE = r".*\.[^.]*\.(\d+)\."
SAVEABLE = {"lm_head": "lm_head.weight", "model.embed_tokens": "model.embed_tokens.weight"}


# ---------------------------------------------------------------- reading an adapter


def read_adapter_weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    st = adapter_dir / "adapter_model.safetensors"
    if st.exists():
        return {k: torch.from_numpy(v) for k, v in llama_ref.read_safetensors(st).items()}
    binf = adapter_dir / "adapter_model.bin"
    if binf.exists():
        state = torch.load(binf, map_location="cpu")
        return {k: v.to(DT) for k, v in state.items()}  # f32 / f16 / bf16 -> f64 exactly
    raise FileNotFoundError(f"no adapter_model.safetensors or adapter_model.bin in {adapter_dir}")


def pattern_value(patterns: dict, name: str, default):
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?{key}$", name):
            return value
    return default


def layer_of(name: str, layers_pattern) -> int | None:
    if not layers_pattern:
        m = re.match(DEFAULT_LAYER_RE, name)
        return int(m.group(1)) if m else None
    for p in [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern:
        m = re.match(rf".*\.{p}\.(\d+)\.", name)
        if m:
            return int(m.group(1))
    return None


def targeted(name: str, cfg: dict) -> bool:
    tm = cfg.get("target_modules")
    if isinstance(tm, str):
        return re.fullmatch(tm, name) is not None
    if tm is None:
        tm = ["q_proj", "v_proj"]  # PEFT's default for LLaMA
    if name in tm:
        return True
    if not any(name.endswith("." + t) for t in tm):
        return False
    layers = cfg.get("layers_to_transform")
    if layers is None or layers == []:
        return True
    layers = [layers] if isinstance(layers, int) else layers
    idx = layer_of(name, cfg.get("layers_pattern"))
    return idx is not None and idx in layers


@dataclass
class LoraModule:
    A: torch.Tensor  # [r, in]
    B: torch.Tensor  # [out, r]
    r: int
    alpha: float
    scaling: float


@dataclass
class AdapterRef:
    path: Path
    config: dict
    lora: dict[str, LoraModule] = field(default_factory=dict)       # module name -> weights
    saved: dict[str, torch.Tensor] = field(default_factory=dict)    # "lm_head.weight" -> W


def load_adapter(adapter_dir: str | Path, base: LlamaRef, linear_shapes: dict) -> AdapterRef:
    adapter_dir = Path(adapter_dir)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("peft_type") != "LORA":
        raise ValueError(f"{adapter_dir}: peft_type {cfg.get('peft_type')} is not LORA")
    for unsupported in ("use_dora", "lora_bias", "layer_replication"):
        if cfg.get(unsupported):
            raise ValueError(f"{adapter_dir}: {unsupported} is not modelled by this reference")
    r0, alpha0 = cfg["r"], cfg["lora_alpha"]
    rank_pattern = cfg.get("rank_pattern") or {}
    alpha_pattern = cfg.get("alpha_pattern") or {}
    rslora = bool(cfg.get("use_rslora", False))
    weights = read_adapter_weights(adapter_dir)

    ad = AdapterRef(adapter_dir, cfg)
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in weights.items():
        if not key.startswith(PREFIX):
            raise ValueError(f"{adapter_dir}: key {key} does not start with {PREFIX}")
        rest = key[len(PREFIX):]
        m = LORA_KEY.match(rest)
        if m:
            found.setdefault(m["module"], {})[m["ab"]] = t
            continue
        m = SAVED_KEY.match(rest)
        if m and m["module"] + ".weight" in SAVEABLE.values():
            ad.saved[m["module"] + ".weight"] = t
            continue
        raise ValueError(f"{adapter_dir}: unexpected key {key}")

    for name, (out_f, in_f) in linear_shapes.items():
        if not targeted(name, cfg):
            if name in found:
                raise ValueError(f"{adapter_dir}: LoRA weights for {name}, not a target")
            continue
        r = pattern_value(rank_pattern, name, r0)
        alpha = pattern_value(alpha_pattern, name, alpha0)
        ab = found.pop(name, {})
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{adapter_dir}: {name} lacks lora_A or lora_B")
        if tuple(ab["A"].shape) != (r, in_f) or tuple(ab["B"].shape) != (out_f, r):
            raise ValueError(f"{adapter_dir}: {name}: A {tuple(ab['A'].shape)}, "
                             f"B {tuple(ab['B'].shape)}, want ({r}, {in_f}), ({out_f}, {r})")
        s = alpha / math.sqrt(r) if rslora else alpha / r
        ad.lora[name] = LoraModule(ab["A"], ab["B"], r, alpha, s)
    if found:
        raise ValueError(f"{adapter_dir}: LoRA weights for modules the model lacks: "
                         f"{sorted(found)}")

    mts = cfg.get("modules_to_save") or []
    want_saved = set()
    for m in mts:  # PEFT: a module is wrapped when its name ends with the entry
        want_saved |= {w for w in SAVEABLE.values() if w[:-len(".weight")].endswith(m)}
    if set(ad.saved) != want_saved:
        raise ValueError(f"{adapter_dir}: saved modules {sorted(ad.saved)}, "
                         f"modules_to_save {mts}")
    for w, t in ad.saved.items():
        if tuple(t.shape) != (base.vocab, base.hidden):
            raise ValueError(f"{adapter_dir}: {w} has shape {tuple(t.shape)}")
    return ad


# ---------------------------------------------------------------- the model with adapters


class LoraLlamaRef(LlamaRef):
    def __init__(self, model_dir: str | Path, adapters=(), merged: bool = False):
        super().__init__(model_dir)
        c = json.loads((Path(model_dir) / "config.json").read_text())
        self.tied = bool(c.get("tie_word_embeddings", False))
        self.ffn = c["intermediate_size"]
        self.adapters: list[tuple[AdapterRef, float]] = [
            (load_adapter(d, self, self.linear_shapes()), float(scale)) for d, scale in adapters]
        self.merged = merged

        replaced: dict[str, Path] = {}
        for ad, _ in self.adapters:
            for w, t in ad.saved.items():
                if w in replaced:
                    raise ValueError(f"{w} replaced by both {replaced[w]} and {ad.path}")
                if self.tied:
                    raise ValueError("modules_to_save on a tied model is not modelled")
                replaced[w] = ad.path
                self.w[w] = t
                if w == "lm_head.weight":
                    self.lm_head = t
        if merged:
            for name in self.linear_shapes():
                w = self.w[name + ".weight"].clone()
                for ad, scale in self.adapters:
                    m = ad.lora.get(name)
                    if m is not None:
                        w += (scale * m.scaling) * (m.B @ m.A)
                self.w[name + ".weight"] = w

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, f = self.hidden, self.ffn
        shapes = {}
        for i in range(self.layers):
            a, m = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
            shapes.update({a + "q_proj": (q, h), a + "k_proj": (kv, h), a + "v_proj": (kv, h),
                           a + "o_proj": (h, q), m + "gate_proj": (f, h), m + "up_proj": (f, h),
                           m + "down_proj": (h, f)})
        return shapes

    def linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        y = x @ self.w[name + ".weight"].T
        if not self.merged:
            for ad, scale in self.adapters:
                m = ad.lora.get(name)
                if m is not None:
                    y = y + (scale * m.scaling) * ((x @ m.A.T) @ m.B.T)
        return y

    # The same computation as LlamaRef.attention / .mlp, each matrix product through linear().
    def attention(self, x: torch.Tensor, i: int, cos: torch.Tensor, sin: torch.Tensor):
        p = f"model.layers.{i}.self_attn."
        n = x.shape[0]
        q = self.linear(x, p + "q_proj").view(n, self.heads, self.head_dim).transpose(0, 1)
        k = self.linear(x, p + "k_proj").view(n, self.kv_heads, self.head_dim).transpose(0, 1)
        v = self.linear(x, p + "v_proj").view(n, self.kv_heads, self.head_dim).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=0)
        v = v.repeat_interleave(group, dim=0)
        scores = q @ k.transpose(1, 2) / self.head_dim**0.5
        causal = torch.ones(n, n, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        out = out.transpose(0, 1).reshape(n, self.heads * self.head_dim)
        return self.linear(out, p + "o_proj")

    def mlp(self, x: torch.Tensor, i: int) -> torch.Tensor:
        p = f"model.layers.{i}.mlp."
        gate = torch.nn.functional.silu(self.linear(x, p + "gate_proj"))
        up = self.linear(x, p + "up_proj")
        return self.linear(gate * up, p + "down_proj")


def logits(model_dir: str | Path, ids, adapters=(), merged: bool = False) -> np.ndarray:
    """adapters: [(adapter_dir, user_scale), ...]."""
    return LoraLlamaRef(model_dir, adapters, merged).logits(list(ids))


def adapter_summary(model_dir: str | Path, adapter_dir: str | Path) -> dict:
    """What the reference resolved for one adapter: modules, r, alpha, scaling, saved modules."""
    ref = LoraLlamaRef(model_dir)
    ad = load_adapter(adapter_dir, ref, ref.linear_shapes())
    return {
        "lora_modules": {n: {"r": m.r, "alpha": m.alpha, "scaling": m.scaling}
                         for n, m in ad.lora.items()},
        "saved_modules": sorted(w[:-len(".weight")] for w in ad.saved),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="HF LLaMA + PEFT LoRA reference forward (float64)")
    ap.add_argument("model_dir")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--adapter", action="append", default=[], help="DIR or DIR:SCALE")
    ap.add_argument("--merged", action="store_true", help="merge into the weights first")
    ap.add_argument("--out", required=True, help="raw little-endian float32 [len(ids)][vocab]")
    a = ap.parse_args(argv)
    ids = [int(t) for t in a.ids.split(",") if t.strip()]
    adapters = []
    for spec in a.adapter:
        d, sep, s = spec.rpartition(":")
        adapters.append((d, float(s)) if sep and d else (spec, 1.0))
    out = logits(a.model_dir, ids, adapters, a.merged)
    Path(a.out).write_bytes(out.astype("<f4").tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
