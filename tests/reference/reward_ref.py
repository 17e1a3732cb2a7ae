#!/usr/bin/python3
"""Float64 reference of a LLaMA reward model: transformers' LlamaForSequenceClassification.

    reward = score.weight @ norm(h_L)[last token]          (no bias; num_labels outputs)

where h_L is the last layer's output and norm the final RMSNorm. The model is either

  * a LlamaForSequenceClassification directory (config.json + safetensors with score.weight and
    no lm_head), or
  * a causal-LM base plus PEFT LoRA adapters, one of which saves `score` through modules_to_save
    (task_type SEQ_CLS: PEFT wraps the score head and stores it as base_model.model.score.weight).

Builds on llama_ref.py (its safetensors reader, RMSNorm and the attention / MLP of one layer) and
shares no code with the C++ library. LoRA factors are merged into the float64 weights
(W + user_scale * lora_alpha / r * B @ A, or alpha / sqrt(r) with rsLoRA), which equals PEFT's
unmerged forward up to float64 rounding; rank_pattern / alpha_pattern are not modelled (an adapter
using them is refused).

    RewardRef(model_dir, adapters=[(adapter_dir, user_scale), ...]).reward(ids) -> np.ndarray
    RewardRef(...).final_hidden(ids) -> np.ndarray [len(ids), hidden]   (after the final norm)

CLI:  reward_ref.py MODEL_DIR --ids 1,2,3 [--adapter DIR[:SCALE]]...   (prints the rewards)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_ref  # noqa: E402
from llama_ref import LlamaRef, rms_norm, rope_cos_sin  # noqa: E402

PREFIX = "base_model.model."
LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


class RewardRef(LlamaRef):
    def __init__(self, model_dir: str | Path, adapters=()):
        # LlamaRef.__init__ wants an LM head; a sequence classifier has none, so set up the
        # fields it would and keep its attention / mlp methods.
        model_dir = Path(model_dir)
        c = json.loads((model_dir / "config.json").read_text())
        self.config = c
        self.hidden = c["hidden_size"]
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        self.vocab = c["vocab_size"]
        self.w = llama_ref.read_weights(model_dir)
        arch = (c.get("architectures") or ["LlamaForCausalLM"])[0]
        self.score = self.w.get("score.weight") if arch == "LlamaForSequenceClassification" else None
        if arch == "LlamaForSequenceClassification" and self.score is None:
            raise ValueError(f"{model_dir}: a sequence classifier without score.weight")
        tied = c.get("tie_word_embeddings", False)
        head = "model.embed_tokens.weight" if tied else "lm_head.weight"
        self.lm_head = self.w.get(head)
        for d, scale in adapters:
            self._apply_adapter(Path(d), float(scale))

    def _apply_adapter(self, d: Path, scale: float) -> None:
        cfg = json.loads((d / "adapter_config.json").read_text())
        if cfg.get("peft_type") != "LORA":
            raise ValueError(f"{d}: not a LORA adapter")
        if cfg.get("rank_pattern") or cfg.get("alpha_pattern") or cfg.get("use_dora"):
            raise ValueError(f"{d}: rank/alpha patterns and DoRA are not modelled here")
        r, alpha = cfg["r"], cfg["lora_alpha"]
        s = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
        tensors = llama_ref.read_safetensors(d / "adapter_model.safetensors")
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, a in tensors.items():
            if not key.startswith(PREFIX):
                raise ValueError(f"{d}: key {key} lacks {PREFIX}")
            rest = key[len(PREFIX):]
            m = LORA_KEY.match(rest)
            if m:
                pairs.setdefault(m["module"], {})[m["ab"]] = torch.from_numpy(a)
            elif rest == "score.weight":
                if "score" not in (cfg.get("modules_to_save") or []):
                    raise ValueError(f"{d}: score.weight saved but modules_to_save lacks score")
                self.score = torch.from_numpy(a)
            else:
                raise ValueError(f"{d}: unexpected key {key}")
        for module, ab in pairs.items():
            name = module + ".weight"
            if set(ab) != {"A", "B"} or name not in self.w:
                raise ValueError(f"{d}: bad LoRA pair for {module}")
            self.w[name] = self.w[name] + (scale * s) * (ab["B"] @ ab["A"])

    def final_hidden(self, ids: list[int]) -> np.ndarray:
        """Final-normed hidden states [len(ids), hidden] of one causal forward from position 0."""
        x = self.w["model.embed_tokens.weight"][torch.tensor(ids, dtype=torch.long)]
        cos, sin = rope_cos_sin(len(ids), self.head_dim, self.theta)
        for i in range(self.layers):
            p = f"model.layers.{i}."
            h = rms_norm(x, self.w[p + "input_layernorm.weight"], self.eps)
            x = x + self.attention(h, i, cos, sin)
            h = rms_norm(x, self.w[p + "post_attention_layernorm.weight"], self.eps)
            x = x + self.mlp(h, i)
        return rms_norm(x, self.w["model.norm.weight"], self.eps).numpy()

    def reward(self, ids: list[int]) -> np.ndarray:
        """score @ h[last]: [num_labels]. LlamaForSequenceClassification pools the last token
        (the last non-pad one; these inputs hold no pad token)."""
        if self.score is None:
            raise ValueError("no score head: neither the model nor an adapter has one")
        h = torch.from_numpy(self.final_hidden(list(ids))[-1])
        return (self.score @ h).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="LLaMA reward model reference (float64)")
    ap.add_argument("model_dir")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--adapter", action="append", default=[], help="DIR or DIR:SCALE")
    a = ap.parse_args(argv)
    ids = [int(t) for t in a.ids.split(",") if t.strip()]
    adapters = []
    for spec in a.adapter:
        d, sep, s = spec.rpartition(":")
        adapters.append((d, float(s)) if sep and d else (spec, 1.0))
    print(json.dumps(RewardRef(a.model_dir, adapters).reward(ids).tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
