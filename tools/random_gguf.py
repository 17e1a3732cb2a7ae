#!/usr/bin/python3
"""A random-weight LLaMA as a GGUF file (f16), for llama.cpp's llama-bench beside stackllama-bench.

stackllama-bench --shape 1b|7b builds its random models in memory; this writes the same shapes
in llama.cpp's format, so both programs can be timed on one machine in one session:

    tools/random_gguf.py --shape 1b -o r1b-f16.gguf
    llama-quantize r1b-f16.gguf r1b-q4_0.gguf q4_0          # and q8_0
    llama-bench -m r1b-q4_0.gguf -p 128 -n 64 -r 3 -t 2
    build/bench/stackllama-bench --shape 1b --type q4 -p 128 -n 64 -r 3 -t 2

Speed does not depend on the values, only on the shapes and types. The vocabulary is a real
SentencePiece model's (llama.cpp will not load a model without one); the default is the LLaMA
tokenizer in ../shared/data. A 7B file is 13.5 GB before quantization.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gguf_write as gw  # noqa: E402

# The shapes of stackllama-bench --shape (bench/random_model.cpp).
SHAPES = {
    "1b": dict(hidden=2048, layers=22, heads=32, kv_heads=4, ffn=5632),
    "7b": dict(hidden=4096, layers=32, heads=32, kv_heads=32, ffn=11008),
    # Small enough for a test.
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=160),
}


def tensor_list(s: dict, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, numpy shape [rows, cols]) in llama.cpp's names; norms are 1-D."""
    h, hd = s["hidden"], s["hidden"] // s["heads"]
    kv = s["kv_heads"] * hd
    out = [("token_embd.weight", (vocab, h))]
    for i in range(s["layers"]):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (h,)), (p + "attn_q.weight", (h, h)),
                (p + "attn_k.weight", (kv, h)), (p + "attn_v.weight", (kv, h)),
                (p + "attn_output.weight", (h, h)), (p + "ffn_norm.weight", (h,)),
                (p + "ffn_gate.weight", (s["ffn"], h)), (p + "ffn_up.weight", (s["ffn"], h)),
                (p + "ffn_down.weight", (h, s["ffn"]))]
    return out + [("output_norm.weight", (h,)), ("output.weight", (vocab, h))]


def write(path: Path, shape: str, tokenizer: Path, seed: int = 0) -> None:
    s = SHAPES[shape]
    meta = gw.llama_metadata(f"random {shape} (stackllama tools/random_gguf.py)",
                             gw.FILE_TYPE_MOSTLY_F16, context=2048, eps=1e-5, rope_theta=10000.0,
                             tokenizer=tokenizer, **s)
    vocab = len(gw.read_vocab(tokenizer)[0])
    # Random values from one pool, each tensor a different rotation of it: generating 6.7 G
    # normal samples would take longer than the benchmark.
    pool = (np.random.default_rng(seed).standard_normal(1 << 22) * 0.02).astype(np.float16)

    def values(k: int, shp: tuple[int, ...]):
        if len(shp) == 1:
            return lambda: np.ones(shp, np.float32)
        return lambda: np.resize(np.roll(pool, k * 7919), shp)

    gw.write(path, meta, [(name, shp, gw.GGML_F32 if len(shp) == 1 else gw.GGML_F16, values(k, shp))
                          for k, (name, shp) in enumerate(tensor_list(s, vocab))])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--tokenizer", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data" /
                    "llama-tokenizer" / "tokenizer.model",
                    help="a SentencePiece tokenizer.model for the vocabulary")
    a = ap.parse_args(argv)
    if not a.tokenizer.is_file():
        print(f"random_gguf: no tokenizer at {a.tokenizer} (give --tokenizer)", file=sys.stderr)
        return 2
    write(a.output, a.shape, a.tokenizer)
    print(f"wrote {a.output} ({a.output.stat().st_size / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
