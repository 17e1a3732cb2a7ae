#!/usr/bin/python3
"""CTest fixture step: models for generator_test, sampler_test and reward_test.

OUT/ holds
  seqcls_f32/          LlamaForSequenceClassification, f32, 1 label (the TRL reward model shape)
  seqcls_bf16_3/       LlamaForSequenceClassification, bf16, 3 labels
  base/                a causal LM (GQA, f32; vocab 512 with stories260K's tokenizer when
                       --shared-data has it, so text can be generated and scored)
  rm_adapter/          a PEFT LoRA adapter for base, task_type SEQ_CLS, score in modules_to_save
                       (saved as base_model.model.score.weight [1, hidden])
  rm_adapter_noscore/  the same LoRA weights without the score tensor (as the published
                       llama-7b-se-rm-peft is reported to be): must be refused
  policy_adapter/      a CAUSAL_LM LoRA adapter for base (the policy of best-of-n)
  llama_tok/           a causal LM with the real LLaMA tokenizer (vocab 32000), for non-ASCII
                       streaming (only when --shared-data holds llama-tokenizer/)
  rewards.json         cases: model, adapters, inputs (token ids) and float64 reference rewards
                       (reward_ref.py)
  fixture.json         the hash of all of it

The reference is checked before anything is written: on the causal base, reward_ref's hidden
states times lm_head must equal llama_ref's logits, and with the LoRA of rm_adapter_noscore they
must equal lora_ref's logits (so the reward reference's forward and LoRA merge agree with the
independent references), within 1e-9.

Everything is rebuilt together when the hash of the definitions and of the Python sources
changes, in OUT.tmp, then renamed to OUT.
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
import reward_ref  # noqa: E402

SEQCLS = {
    "seqcls_f32": dict(model=dict(hidden=64, layers=2, heads=8, kv_heads=2, ffn=96, vocab=320,
                                  seed=61), labels=1, dtype="f32"),
    "seqcls_bf16_3": dict(model=dict(hidden=64, layers=3, heads=4, kv_heads=4, ffn=128,
                                     vocab=300, seed=62, dtype="bf16"), labels=3, dtype="bf16"),
}
BASE = dict(hidden=64, layers=2, heads=8, kv_heads=2, ffn=96, vocab=512, seed=63)
LLAMA_TOK = dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=96, vocab=32000, seed=64,
                 max_pos=1024)
RM_LORA = dict(target_modules=["q_proj", "v_proj", "o_proj", "down_proj"], r=8, lora_alpha=16,
               seed=65)
POLICY_LORA = dict(target_modules=["q_proj", "v_proj"], r=16, lora_alpha=32, seed=66)
# Inputs of each reward case: lengths (the ids are random, BOS first).
LENGTHS = [1, 5, 17, 40]

SOURCES = [Path(__file__), Path(llama_ref.__file__), Path(lora_ref.__file__),
           Path(reward_ref.__file__), Path(make_llama_fixture.__file__),
           Path(make_peft_adapter.__file__)]


def definitions_hash(shared: Path | None) -> str:
    h = hashlib.sha256(json.dumps(
        {"seqcls": SEQCLS, "base": BASE, "llama_tok": LLAMA_TOK, "rm": RM_LORA,
         "policy": POLICY_LORA, "lengths": LENGTHS, "shared": str(shared)},
        sort_keys=True).encode())
    for src in SOURCES:
        h.update(src.read_bytes())
    return h.hexdigest()


def make_ids(n: int, vocab: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [1] + [int(t) for t in rng.integers(3, vocab, n - 1)]


def f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def make_seqcls(out: Path, model: dict, labels: int, dtype: str, seed: int) -> None:
    """A causal fixture turned into a sequence classifier: lm_head dropped, score added."""
    make_llama_fixture.make_fixture(out, **model)
    tensors = llama_ref.read_safetensors(out / "model.safetensors")  # exact in float64
    hidden = model["hidden"]
    rng = np.random.default_rng(seed + 500)
    score = rng.standard_normal((labels, hidden), dtype=np.float32) * np.float32(2 / hidden**0.5)
    keep = [(k, f32(v)) for k, v in tensors.items() if k != "lm_head.weight"]
    keep.append(("score.weight", f32(score)))
    (out / "model.safetensors").write_bytes(make_llama_fixture.safetensors_bytes(keep, dtype))
    config = json.loads((out / "config.json").read_text())
    config["architectures"] = ["LlamaForSequenceClassification"]
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(labels)}
    config["label2id"] = {f"LABEL_{i}": i for i in range(labels)}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def add_score(adapter: Path, hidden: int, seed: int) -> None:
    """Turns a written LoRA adapter into a SEQ_CLS one with score saved (PEFT's key)."""
    st = adapter / "adapter_model.safetensors"
    tensors = [(k, f32(v)) for k, v in llama_ref.read_safetensors(st).items()]
    rng = np.random.default_rng(seed + 700)
    score = rng.standard_normal((1, hidden), dtype=np.float32) * np.float32(2 / hidden**0.5)
    tensors.append(("base_model.model.score.weight", f32(score)))
    st.write_bytes(make_llama_fixture.safetensors_bytes(tensors, "f32"))
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["task_type"] = "SEQ_CLS"
    cfg["modules_to_save"] = ["score"]
    (adapter / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def mark_seq_cls(adapter: Path) -> None:
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["task_type"] = "SEQ_CLS"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def check_reference(base: Path, noscore: Path, vocab: int) -> float:
    """The reward reference's forward against llama_ref and lora_ref (see the module doc)."""
    ids = make_ids(23, vocab, 99)
    worst = 0.0
    for adapters in ([], [(noscore, 1.0)]):
        ref = reward_ref.RewardRef(base, adapters)
        ours = ref.final_hidden(ids) @ ref.lm_head.numpy().T
        theirs = (lora_ref.logits(base, ids, adapters) if adapters
                  else llama_ref.logits(base, ids))
        d = float(np.abs(ours - theirs).max())
        assert d < 1e-9, f"reward_ref differs from the logits references by {d}"
        worst = max(worst, d)
    return worst


def build(out: Path, digest: str, shared: Path | None) -> dict:
    tmp = out.parent / (out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    stories_tok = shared / "stories260K-hf" / "tokenizer.model" if shared else None
    llama_tok = shared / "llama-tokenizer" / "tokenizer.model" if shared else None

    for name, case in SEQCLS.items():
        make_seqcls(tmp / name, case["model"], case["labels"], case["dtype"],
                    case["model"]["seed"])
    tok = stories_tok if stories_tok and stories_tok.is_file() else None
    base = make_llama_fixture.make_fixture(tmp / "base", tokenizer=tok, **BASE)
    for name, lora in (("rm_adapter", RM_LORA), ("rm_adapter_noscore", RM_LORA),
                       ("policy_adapter", POLICY_LORA)):
        make_peft_adapter.make_adapter(tmp / name, base, base_model_name_or_path="base", **lora)
    add_score(tmp / "rm_adapter", BASE["hidden"], RM_LORA["seed"])
    mark_seq_cls(tmp / "rm_adapter_noscore")
    if llama_tok and llama_tok.is_file():
        make_llama_fixture.make_fixture(tmp / "llama_tok", tokenizer=llama_tok, **LLAMA_TOK)

    ref_check = check_reference(tmp / "base", tmp / "rm_adapter_noscore", BASE["vocab"])

    cases = []
    for name, case in list(SEQCLS.items()) + [("base+rm_adapter", None)]:
        if case is None:
            model, adapters, vocab = "base", [("rm_adapter", 1.0)], BASE["vocab"]
        else:
            model, adapters, vocab = name, [], case["model"]["vocab"]
        ref = reward_ref.RewardRef(tmp / model, [(tmp / a, s) for a, s in adapters])
        inputs = [make_ids(n, vocab, 1000 + k) for k, n in enumerate(LENGTHS)]
        rewards = [ref.reward(ids).tolist() for ids in inputs]
        spread = float(np.std([r[0] for r in rewards]))
        assert spread > 0.1, f"{name}: rewards barely differ ({spread}); a test could not fail"
        cases.append(dict(name=name, model=model,
                          adapters=[dict(dir=a, scale=s) for a, s in adapters],
                          labels=len(rewards[0]), inputs=inputs, rewards=rewards))
    (tmp / "rewards.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    summary = {"hash": digest, "generator": "tests/reference/make_generate_fixtures.py",
               "reference_check": ref_check, "base_has_tokenizer": tok is not None,
               "llama_tok": (tmp / "llama_tok").is_dir()}
    (tmp / "fixture.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--shared-data", type=Path, default=None,
                    help="../shared/data (tokenizers); absent: the models come without them")
    ap.add_argument("--force", action="store_true", help="regenerate even when up to date")
    a = ap.parse_args(argv)
    out = a.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    shared = a.shared_data.resolve() if a.shared_data and a.shared_data.is_dir() else None
    digest = definitions_hash(shared)
    try:
        if not a.force and json.loads((out / "fixture.json").read_text())["hash"] == digest:
            print(f"{out}: up to date")
            return 0
    except (OSError, ValueError, KeyError):
        pass
    t0 = time.monotonic()
    s = build(out, digest, shared)
    print(f"{out}: written in {time.monotonic() - t0:.2f}s (reference check {s['reference_check']:.1e}, "
          f"tokenizer on base: {s['base_has_tokenizer']}, llama_tok: {s['llama_tok']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
