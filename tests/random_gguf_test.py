#!/usr/bin/python3
"""tools/random_gguf.py writes a GGUF file llama.cpp can read: checked here by a reader of its own
(the GGUF v3 layout read field by field, not through the writer's code) on the tiny shape with
stories260K's 512-piece tokenizer.

Exit 0 on success, 1 on a failure; SKIP (exit 0) without the shared data, a failure under CI=true.
"""

from __future__ import annotations

import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "reference"))
import random_gguf  # noqa: E402
import shared_data  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


class Reader:
    def __init__(self, data: bytes):
        self.d, self.p = data, 0

    def take(self, fmt: str):
        v = struct.unpack_from("<" + fmt, self.d, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string(self) -> bytes:
        n = self.take("Q")
        s = self.d[self.p:self.p + n]
        self.p += n
        return s

    def value(self, t: int):
        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
                  11: "q", 12: "d"}
        if t in scalar:
            return self.take(scalar[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"unknown metadata type {t}")


def check(path: Path, tokenizer: Path) -> list[str]:
    errors = []

    def expect(cond: bool, what: str) -> None:
        if not cond:
            errors.append(what)

    data = path.read_bytes()
    r = Reader(data)
    expect(data[:4] == b"GGUF", "magic")
    r.p = 4
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    expect(version == 3, f"version {version}")
    kv = {}
    for _ in range(n_kv):
        key = r.string().decode()
        kv[key] = r.value(r.take("I"))
    s = random_gguf.SHAPES["tiny"]
    expect(kv.get("general.architecture") == b"llama", "architecture")
    for key, want in (("llama.embedding_length", s["hidden"]), ("llama.block_count", s["layers"]),
                      ("llama.feed_forward_length", s["ffn"]),
                      ("llama.attention.head_count", s["heads"]),
                      ("llama.attention.head_count_kv", s["kv_heads"]),
                      ("llama.rope.dimension_count", s["hidden"] // s["heads"])):
        expect(kv.get(key) == want, f"{key} = {kv.get(key)}, want {want}")

    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    tokens = kv.get("tokenizer.ggml.tokens", [])
    expect(len(tokens) == sp.get_piece_size(), f"{len(tokens)} tokens")
    expect(all(tokens[i] == sp.id_to_piece(i).encode() for i in range(len(tokens))), "token text")
    types = kv.get("tokenizer.ggml.token_type", [])
    expect(types[:3] == [2, 3, 3], f"<unk> <s> </s> types {types[:3]}")
    expect(len(kv.get("tokenizer.ggml.scores", [])) == len(tokens), "scores")

    infos = []
    for _ in range(n_tensors):
        name = r.string().decode()
        nd = r.take("I")
        dims = [r.take("Q") for _ in range(nd)]
        infos.append((name, dims, r.take("I"), r.take("Q")))
    align = kv.get("general.alignment", 32)
    start = -(-r.p // align) * align
    expect(len(infos) == 3 + 9 * s["layers"], f"{len(infos)} tensors")
    vocab, h = len(tokens), s["hidden"]
    shapes = {n: d for n, d, _, _ in infos}
    expect(shapes.get("token_embd.weight") == [h, vocab], "token_embd dims (innermost first)")
    expect(shapes.get("blk.1.ffn_down.weight") == [s["ffn"], h], "ffn_down dims")
    expect(shapes.get("blk.0.attn_k.weight") == [h, s["kv_heads"] * h // s["heads"]], "attn_k dims")
    end = start
    for name, dims, t, off in infos:
        size = int(np.prod(dims)) * {0: 4, 1: 2}[t]
        expect(off % align == 0, f"{name} offset {off} not aligned")
        expect(start + off >= end, f"{name} overlaps the tensor before it")
        a = np.frombuffer(data, {0: np.float32, 1: np.float16}[t], int(np.prod(dims)), start + off)
        if name.endswith("norm.weight"):
            expect(t == 0 and bool(np.all(a == 1)), f"{name}: f32 ones")
        else:
            expect(t == 1 and bool(np.all(np.isfinite(a))) and 0.01 < float(a.std()) < 0.04,
                   f"{name}: f16 values")
        end = start + off + size
    expect(len(data) == -(-end // align) * align, f"file is {len(data)} bytes, data ends at {end}")
    return errors


def main() -> int:
    tok = SHARED / "stories260K-hf" / "tokenizer.model"
    if (rc := shared_data.missing(tok)) is not None:
        return rc
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "tiny.gguf"
        if random_gguf.main(["--shape", "tiny", "-o", str(out), "--tokenizer", str(tok)]) != 0:
            print("FAIL: random_gguf.py failed")
            return 1
        errors = check(out, tok)
    for e in errors:
        print("FAIL:", e)
    if not errors:
        print("OK: the tiny GGUF reads back field by field")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
