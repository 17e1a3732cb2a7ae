#!/usr/bin/python3
"""CTest fixture step: a random base LLaMA checkpoint, PEFT LoRA adapters for it, and reference
logits for adapter_test.

OUT/ holds
  base/                 the base checkpoint (tools/make_llama_fixture.py; GQA, untied)
  base_h96/             the same with hidden_size 96, which adapters/bad_hidden fits
  adapters/<name>/      PEFT adapter directories (tools/make_peft_adapter.py)
  cases/<name>/         ids.txt         space-separated token ids, BOS=1 first
                        ref_logits.f32  raw little-endian float32 [n_ids][vocab] (lora_ref.py)
                        case.json       name, base, adapters [{dir, scale, lora_modules,
                                        saved_modules}], prefill_len, n_ids, vocab, and
                                        same_logits_as (a case whose logits must be equal)
  errors.json           the adapters that must not load, with what the error must name
  fixture.json          the hash of all of it

Paths in case.json and errors.json are relative to OUT. Every case's reference is computed
twice, unmerged and merged, and the two must agree to 1e-9 (else this step fails); so must
cases that hold the same values in other forms (.bin / .safetensors, bias, fan_in_fan_out,
adapter name in keys, legacy config).

Everything is rebuilt together (a few seconds) when the hash of the definitions and of the
Python sources changes, in OUT.tmp, then renamed to OUT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOOLS = HERE.parents[1] / "tools"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(TOOLS))
import llama_ref  # noqa: E402
import lora_ref  # noqa: E402
import make_llama_fixture  # noqa: E402
import make_peft_adapter  # noqa: E402

BASE = dict(hidden=64, layers=2, heads=8, kv_heads=2, ffn=96, vocab=320, seed=41)
# A second base with another hidden size: the bad_hidden adapter fits it (attach / merge tests).
OTHER_BASE = dict(BASE, hidden=96, seed=42)
N_IDS = 30
PREFILL = 17
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The StackLLaMA RL step's LoraConfig (trl examples/research_projects/stack_llama).
STACKLLAMA = dict(target_modules=["q_proj", "v_proj"], r=16, lora_alpha=32, lora_dropout=0.05)

# name -> make_peft_adapter.make_adapter keywords ("fmt" "both" also writes <name>-bin).
ADAPTERS: dict[str, dict] = {
    "qv_r16": dict(STACKLLAMA, seed=1),
    "all7_r4": dict(target_modules=ALL7, r=4, lora_alpha=8, seed=2),
    "rslora": dict(target_modules=ALL7, r=9, lora_alpha=6, use_rslora=True, seed=3),
    # Per-module ranks and alphas. "proj" matches nothing ((.*\.)?proj$ needs a dot before it);
    # a regex key; a layer-specific key; a module with a pattern rank but the default alpha.
    "patterns": dict(
        target_modules=ALL7, r=8, lora_alpha=16, seed=4,
        rank_pattern={"v_proj": 4, "layers.1.self_attn.q_proj": 2,
                      r"layers\.0\.mlp\.(gate|up)_proj": 12},
        alpha_pattern={"proj": 1000, "q_proj": 3, "down_proj": 40, "o_proj": 5}),
    "regex_targets": dict(
        target_modules=r".*\.layers\.0\.self_attn\.(q|k)_proj|.*\.1\.mlp\.up_proj",
        r=6, lora_alpha=12, seed=5),
    "layers_1": dict(target_modules=ALL7, r=4, lora_alpha=8, layers_to_transform=[1], seed=6),
    "mts_lm_head": dict(STACKLLAMA, modules_to_save=["lm_head"], seed=7),
    "mts_embed_tokens": dict(target_modules=["k_proj", "o_proj"], r=4, lora_alpha=4,
                             modules_to_save=["embed_tokens"], seed=8),
    # Same seed and targets as qv_r16, so the same tensors: PEFT on LLaMA ignores these fields.
    "bias_all_fifo": dict(STACKLLAMA, bias="all", fan_in_fan_out=True, seed=1),
    "bias_lora_only": dict(STACKLLAMA, bias="lora_only", seed=1),
    "name_in_keys": dict(STACKLLAMA, adapter_name_in_keys=True, seed=1),
    "legacy_config": dict(STACKLLAMA, config_style="legacy", seed=1),
    "other_base_name": dict(STACKLLAMA, base_model_name_or_path="huggyllama/llama-7b", seed=1),
    # One adapter in both formats with identical values (pair, pair-bin).
    "pair": dict(target_modules=ALL7, r=8, lora_alpha=16, modules_to_save=["lm_head"],
                 fmt="both", seed=9),
    "qv_bf16": dict(STACKLLAMA, dtype="bf16", fmt="both", seed=10),
}

# Adapters that must fail to load: name -> make_adapter keywords, and the expected error.
BAD_ADAPTERS: dict[str, dict] = {
    "bad_hidden": dict(STACKLLAMA, seed=20, override={"hidden_size": 96}),
    "bad_layers": dict(STACKLLAMA, seed=21, override={"num_hidden_layers": 3}),
    "bad_vocab": dict(STACKLLAMA, seed=22, modules_to_save=["lm_head"],
                      override={"vocab_size": 400}),
    "bad_missing_b": dict(
        STACKLLAMA, seed=23,
        drop_keys=["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]),
}

# name -> adapters [(adapter, user scale)] and optionally a case that must give equal logits.
CASES: dict[str, dict] = {
    "base": dict(adapters=[]),
    "qv_r16": dict(adapters=[("qv_r16", 1.0)]),
    "all7_r4": dict(adapters=[("all7_r4", 1.0)]),
    "rslora": dict(adapters=[("rslora", 1.0)]),
    "patterns": dict(adapters=[("patterns", 1.0)]),
    "regex_targets": dict(adapters=[("regex_targets", 1.0)]),
    "layers_1": dict(adapters=[("layers_1", 1.0)]),
    "mts_lm_head": dict(adapters=[("mts_lm_head", 1.0)]),
    # The user scale multiplies the LoRA term only, not the replaced embedding.
    "mts_embed_tokens": dict(adapters=[("mts_embed_tokens", 0.7)]),
    "bias_all_fifo": dict(adapters=[("bias_all_fifo", 1.0)], same_logits_as="qv_r16"),
    "bias_lora_only": dict(adapters=[("bias_lora_only", 1.0)], same_logits_as="qv_r16"),
    "name_in_keys": dict(adapters=[("name_in_keys", 1.0)], same_logits_as="qv_r16"),
    "legacy_config": dict(adapters=[("legacy_config", 1.0)], same_logits_as="qv_r16"),
    "other_base_name": dict(adapters=[("other_base_name", 1.0)], same_logits_as="qv_r16"),
    "pair_safetensors": dict(adapters=[("pair", 1.0)]),
    "pair_bin": dict(adapters=[("pair-bin", 1.0)], same_logits_as="pair_safetensors"),
    "qv_bf16_safetensors": dict(adapters=[("qv_bf16", 1.0)]),
    "qv_bf16_bin": dict(adapters=[("qv_bf16-bin", 1.0)], same_logits_as="qv_bf16_safetensors"),
    "two_adapters": dict(adapters=[("qv_r16", 0.5), ("all7_r4", 1.0)]),
}

SOURCES = [Path(__file__), Path(llama_ref.__file__), Path(lora_ref.__file__),
           Path(make_llama_fixture.__file__), Path(make_peft_adapter.__file__)]


def definitions_hash() -> str:
    definitions = {"base": BASE, "other_base": OTHER_BASE, "n_ids": N_IDS, "prefill": PREFILL,
                   "adapters": ADAPTERS, "bad": BAD_ADAPTERS, "cases": CASES}
    h = hashlib.sha256(json.dumps(definitions, sort_keys=True, default=str).encode())
    for src in SOURCES:
        h.update(src.read_bytes())
    return h.hexdigest()


def is_current(out: Path, digest: str) -> bool:
    try:
        return json.loads((out / "fixture.json").read_text()).get("hash") == digest
    except (OSError, ValueError):
        return False


def make_ids(n: int, vocab: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed + 1000)
    return [1] + [int(t) for t in rng.integers(0, vocab, n - 1)]


def shape_str(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def expected_errors(tmp: Path, base_cfg: dict) -> dict:
    """For each bad adapter, every saved tensor that does not fit: its key, module, and the
    shape in the file and the one the base model implies ("" when no such module exists)."""
    shapes = make_peft_adapter.linear_modules(base_cfg)
    out = {}
    for name, kw in BAD_ADAPTERS.items():
        d = tmp / "adapters" / name
        tensors = llama_ref.read_safetensors(d / "adapter_model.safetensors")
        cfg = json.loads((d / "adapter_config.json").read_text())
        r = cfg["r"]
        misfits = []
        for key, a in tensors.items():
            rest = key[len("base_model.model."):]
            if ".lora_" in rest:
                module, ab = rest.split(".lora_")[0], rest.split(".lora_")[1][0]
                if module not in shapes:
                    misfits.append(dict(key=key, module=module, got=shape_str(a.shape),
                                        want=""))
                    continue
                o, i = shapes[module]
                want = (r, i) if ab == "A" else (o, r)
            else:
                module = rest[:-len(".weight")]
                want = (base_cfg["vocab_size"], base_cfg["hidden_size"])
            if tuple(a.shape) != want:
                misfits.append(dict(key=key, module=module, got=shape_str(a.shape),
                                    want=shape_str(want)))
        entry = dict(dir=f"adapters/{name}", misfits=misfits)
        if kw.get("override") == {"hidden_size": OTHER_BASE["hidden"]}:
            entry["fits"] = "base_h96"
        if "drop_keys" in kw:
            entry["missing"] = [k[len("base_model.model."):].split(".lora_")[0]
                                for k in kw["drop_keys"]]
        else:
            assert misfits, f"{name} fits the base model"
        out[name] = entry
    return out


def build(out: Path, digest: str) -> None:
    tmp = out.parent / (out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    base = make_llama_fixture.make_fixture(tmp / "base", **BASE)
    base_cfg = json.loads((base / "config.json").read_text())
    vocab = base_cfg["vocab_size"]

    for name, kw in {**ADAPTERS, **BAD_ADAPTERS}.items():
        kw = dict(kw)
        # A base_model_name_or_path that does not depend on where the build tree is.
        kw.setdefault("base_model_name_or_path", "base")
        make_peft_adapter.make_adapter(tmp / "adapters" / name, base, **kw)

    # bad_hidden is a sound adapter for a model of its own shape.
    other = make_llama_fixture.make_fixture(tmp / "base_h96", **OTHER_BASE)
    lora_ref.logits(other, [1, 2, 3], [(tmp / "adapters" / "bad_hidden", 1.0)])

    ids = make_ids(N_IDS, vocab, BASE["seed"])
    base_logits = llama_ref.logits(base, ids)
    results: dict[str, np.ndarray] = {}
    summary = {"cases": {}}
    for name, case in CASES.items():
        adapters = [(tmp / "adapters" / a, s) for a, s in case["adapters"]]
        unmerged = lora_ref.logits(base, ids, adapters, merged=False)
        merged = lora_ref.logits(base, ids, adapters, merged=True)
        assert unmerged.shape == (len(ids), vocab)
        merge_diff = float(np.abs(unmerged - merged).max())
        assert merge_diff < 1e-9, f"{name}: merged vs unmerged reference differ by {merge_diff}"
        if not adapters:
            assert np.array_equal(unmerged, base_logits), "base case differs from llama_ref"
        same = case.get("same_logits_as")
        if same is not None:
            d = float(np.abs(unmerged - results[same]).max())
            assert d < 1e-12, f"{name} differs from {same} by {d}"
        results[name] = unmerged
        change = float(np.abs(unmerged - base_logits).max(axis=1).mean())
        if adapters:
            assert change > 0.5, f"{name}: adapters change the logits by only {change}"

        folder = tmp / "cases" / name
        folder.mkdir(parents=True)
        (folder / "ids.txt").write_text(" ".join(map(str, ids)) + "\n")
        (folder / "ref_logits.f32").write_bytes(unmerged.astype("<f4").tobytes())
        entries = []
        for (a, s), (d, _) in zip(case["adapters"], adapters):
            info = lora_ref.adapter_summary(base, d)
            entries.append(dict(dir=f"adapters/{a}", scale=s, **info))
        meta = {
            "name": name,
            "base": "base",
            "adapters": entries,
            "prefill_len": PREFILL,
            "n_ids": len(ids),
            "vocab": vocab,
            "same_logits_as": same,
            "logits_std": float(unmerged.std()),
            "mean_max_change_vs_base": change,
            "merged_vs_unmerged_ref": merge_diff,
            "generator": "tests/reference/make_adapter_fixtures.py",
        }
        (folder / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
        summary["cases"][name] = {"change": round(change, 3), "merge_diff": merge_diff}

    errors = expected_errors(tmp, base_cfg)
    (tmp / "errors.json").write_text(json.dumps(errors, indent=2) + "\n")
    (tmp / "fixture.json").write_text(json.dumps(
        {"hash": digest, "generator": "tests/reference/make_adapter_fixtures.py", **summary},
        indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--force", action="store_true", help="regenerate even when up to date")
    a = ap.parse_args(argv)
    out = a.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = definitions_hash()
    if not a.force and is_current(out, digest):
        print(f"{out}: up to date")
        return 0
    t0 = time.monotonic()
    build(out, digest)
    summary = json.loads((out / "fixture.json").read_text())["cases"]
    for name, s in summary.items():
        print(f"{name}: mean max |logit change| vs base {s['change']:.3f}, "
              f"merged vs unmerged reference {s['merge_diff']:.1e}")
    print(f"{out}: written in {time.monotonic() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
