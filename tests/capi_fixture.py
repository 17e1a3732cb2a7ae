#!/usr/bin/python3
"""CTest fixture step for the C ABI and binding tests: small random PEFT LoRA adapters for a model.

    capi_fixture.py --model DIR --out DIR

Writes, with PEFT's saved key names (adapter_config.json + adapter_model.safetensors):
  OUT/adapter/     CAUSAL_LM, LoRA on q_proj and v_proj of every layer, r=4, lora_alpha=8 (the
                   policy: greedy output changes when it is attached, capi_reference checks)
  OUT/rm_adapter/  SEQ_CLS with `score` in modules_to_save ([1, hidden]): a reward model over the
                   same base, as StackLLaMA's reward LoRA
lora_B is random rather than PEFT's zeros. Only numpy: the safetensors file is written by
tools/make_llama_fixture.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_llama_fixture import safetensors_bytes  # noqa: E402


def write_adapter(out: Path, cfg: dict, rng: np.random.Generator, task: str) -> None:
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim", hidden // heads)
    r, alpha = 4, 8.0
    tensors = []
    for layer in range(cfg["num_hidden_layers"]):
        for proj, out_dim in (("q_proj", heads * head_dim), ("v_proj", kv_heads * head_dim)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            lora_a = rng.normal(0.0, 1.0 / np.sqrt(hidden), (r, hidden)).astype(np.float32)
            lora_b = rng.normal(0.0, 0.5, (out_dim, r)).astype(np.float32)
            tensors.append((f"{prefix}.lora_A.weight", lora_a))
            tensors.append((f"{prefix}.lora_B.weight", lora_b))
    config = {
        "peft_type": "LORA",
        "task_type": task,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "base_model_name_or_path": cfg.get("_name_or_path", ""),
    }
    if task == "SEQ_CLS":
        score = rng.normal(0.0, 2.0 / np.sqrt(hidden), (1, hidden)).astype(np.float32)
        tensors.append(("base_model.model.score.weight", score))
        config["modules_to_save"] = ["score"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "adapter_model.safetensors").write_bytes(safetensors_bytes(tensors, "f32"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    cfg = json.loads((Path(a.model) / "config.json").read_text())
    out = Path(a.out)
    write_adapter(out / "adapter", cfg, np.random.default_rng(a.seed), task="CAUSAL_LM")
    write_adapter(out / "rm_adapter", cfg, np.random.default_rng(a.seed + 1), task="SEQ_CLS")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
