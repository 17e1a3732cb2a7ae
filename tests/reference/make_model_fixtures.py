#!/usr/bin/python3
"""CTest fixture step: random HF LLaMA checkpoints plus reference logits for model_test.

For each case, OUT/<name>/ holds the checkpoint (tools/make_llama_fixture.py), and
  ids.txt         space-separated token ids, BOS=1 first
  ref_logits.f32  raw little-endian float32 [len(ids)][vocab] from llama_ref.py
  case.json       name, prefill_len (ids a test feeds as one prefill before going token by
                  token), n_ids, the checkpoint arguments, and a hash of all of it.

A case whose case.json already carries the same hash is left alone, so a repeated ctest run
is fast. The hash covers the case definition and the sources of the three Python files, so
changing any of them regenerates. Stale case folders (with a case.json, not in CASES) are
removed so the C++ test does not pick them up.
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
import make_llama_fixture  # noqa: E402

GQA = dict(hidden=64, layers=2, heads=8, kv_heads=2, ffn=96, vocab=320)

# name -> checkpoint arguments (make_fixture keywords) and the sequence to run.
CASES: dict[str, dict] = {
    "gqa_f32": dict(model=dict(GQA, seed=11), n_ids=32, prefill_len=20),
    "mha_tied_f32": dict(
        model=dict(hidden=64, layers=2, heads=4, kv_heads=4, ffn=128, vocab=300, tied=True,
                   seed=12),
        n_ids=28, prefill_len=12),
    "f16": dict(model=dict(GQA, dtype="f16", seed=13), n_ids=26, prefill_len=16),
    "bf16": dict(model=dict(GQA, dtype="bf16", seed=14), n_ids=26, prefill_len=16),
    "sharded_f32": dict(model=dict(GQA, shards=3, seed=15), n_ids=24, prefill_len=10),
    "head_dim_f32": dict(
        model=dict(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=32, ffn=96, vocab=320,
                   seed=16),
        n_ids=28, prefill_len=17),
    "theta_eps": dict(
        model=dict(hidden=64, layers=3, heads=8, kv_heads=4, ffn=172, vocab=512,
                   rope_theta=500000.0, rms_eps=1e-5, seed=17,
                   # mean(x^2) of the embeddings ~1e-5, so using eps 1e-6 instead shows.
                   embed_std=0.003),
        n_ids=30, prefill_len=19),
    "long_prompt": dict(model=dict(GQA, layers=3, seed=18), n_ids=140, prefill_len=110),
}


def case_hash(name: str, case: dict) -> str:
    h = hashlib.sha256(json.dumps({name: case}, sort_keys=True).encode())
    for src in (Path(__file__), Path(llama_ref.__file__), Path(make_llama_fixture.__file__)):
        h.update(src.read_bytes())
    return h.hexdigest()


def make_ids(n: int, vocab: int, seed: int) -> list[int]:
    """BOS=1, then random ids over the whole vocabulary (so every embedding row can be hit)."""
    rng = np.random.default_rng(seed + 1000)
    return [1] + [int(t) for t in rng.integers(0, vocab, n - 1)]


def is_current(folder: Path, digest: str) -> bool:
    try:
        meta = json.loads((folder / "case.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("hash") == digest and (folder / "ref_logits.f32").is_file()


def build_case(out: Path, name: str, case: dict, digest: str) -> None:
    model_args = case["model"]
    # Build in a temporary folder and rename, so an interrupted run leaves no half case.
    tmp = out / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    make_llama_fixture.make_fixture(tmp, **model_args)
    ids = make_ids(case["n_ids"], model_args["vocab"], model_args["seed"])
    logits = llama_ref.logits(tmp, ids)
    assert logits.shape == (len(ids), model_args["vocab"])
    (tmp / "ids.txt").write_text(" ".join(map(str, ids)) + "\n")
    (tmp / "ref_logits.f32").write_bytes(logits.astype("<f4").tobytes())
    meta = {
        "name": name,
        "prefill_len": case["prefill_len"],
        "n_ids": len(ids),
        "model": model_args,
        "logits_std": float(logits.std()),
        "generator": "tests/reference/make_model_fixtures.py",
        "hash": digest,
    }
    (tmp / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    final = out / name
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def remove_stale(out: Path) -> None:
    for folder in out.iterdir():
        if folder.is_dir() and folder.name not in CASES and (folder / "case.json").exists():
            shutil.rmtree(folder)
            print(f"removed stale case {folder.name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--force", action="store_true", help="regenerate every case")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    remove_stale(a.out)
    for name, case in CASES.items():
        assert case["n_ids"] >= 24 and 0 < case["prefill_len"] <= case["n_ids"]
        digest = case_hash(name, case)
        folder = a.out / name
        if not a.force and is_current(folder, digest):
            print(f"{name}: up to date")
            continue
        t0 = time.monotonic()
        build_case(a.out, name, case, digest)
        std = json.loads((folder / "case.json").read_text())["logits_std"]
        print(f"{name}: written in {time.monotonic() - t0:.2f}s, logits std {std:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
