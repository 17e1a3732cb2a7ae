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

The writer is the GGUF v3 layout (github.com/ggml-org/ggml, docs/gguf.md): header, key-value
metadata, tensor infos (dimensions innermost first), then the tensor data, each aligned to 32.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import numpy as np

# The shapes of stackllama-bench --shape (bench/random_model.cpp).
SHAPES = {
    "1b": dict(hidden=2048, layers=22, heads=32, kv_heads=4, ffn=5632),
    "7b": dict(hidden=4096, layers=32, heads=32, kv_heads=32, ffn=11008),
    # Small enough for a test.
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=160),
}

ALIGN = 32
# GGUF metadata value types and tensor types used here.
T_UINT32, T_INT32, T_FLOAT32, T_STRING, T_ARRAY = 4, 5, 6, 8, 9
GGML_F32, GGML_F16 = 0, 1
FILE_TYPE_MOSTLY_F16 = 1
# tokenizer.ggml.token_type values.
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_BYTE = 1, 2, 3, 6


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _kv(key: str, vtype: int, value) -> bytes:
    out = _str(key) + struct.pack("<I", vtype)
    if vtype == T_UINT32:
        return out + struct.pack("<I", value)
    if vtype == T_FLOAT32:
        return out + struct.pack("<f", value)
    if vtype == T_STRING:
        return out + _str(value)
    raise ValueError(f"unsupported metadata type {vtype}")


def _kv_array(key: str, etype: int, values) -> bytes:
    out = _str(key) + struct.pack("<IIQ", T_ARRAY, etype, len(values))
    if etype == T_STRING:
        return out + b"".join(_str(v) for v in values)
    fmt = {T_FLOAT32: "f", T_INT32: "i"}[etype]
    return out + struct.pack(f"<{len(values)}{fmt}", *values)


def read_vocab(path: Path) -> tuple[list[bytes], list[float], list[int]]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(path))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i).encode())
        scores.append(sp.get_score(i))
        types.append(TOKEN_UNKNOWN if sp.is_unknown(i) else TOKEN_CONTROL if sp.is_control(i)
                     else TOKEN_BYTE if sp.is_byte(i) else TOKEN_NORMAL)
    return tokens, scores, types


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
    tokens, scores, types = read_vocab(tokenizer)
    vocab = len(tokens)
    meta = [
        _kv("general.architecture", T_STRING, "llama"),
        _kv("general.name", T_STRING, f"random {shape} (stackllama tools/random_gguf.py)"),
        _kv("general.file_type", T_UINT32, FILE_TYPE_MOSTLY_F16),
        _kv("general.alignment", T_UINT32, ALIGN),
        _kv("llama.context_length", T_UINT32, 2048),
        _kv("llama.embedding_length", T_UINT32, s["hidden"]),
        _kv("llama.block_count", T_UINT32, s["layers"]),
        _kv("llama.feed_forward_length", T_UINT32, s["ffn"]),
        _kv("llama.attention.head_count", T_UINT32, s["heads"]),
        _kv("llama.attention.head_count_kv", T_UINT32, s["kv_heads"]),
        _kv("llama.rope.dimension_count", T_UINT32, s["hidden"] // s["heads"]),
        _kv("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, 1e-5),
        _kv("tokenizer.ggml.model", T_STRING, "llama"),
        _kv_array("tokenizer.ggml.tokens", T_STRING, tokens),
        _kv_array("tokenizer.ggml.scores", T_FLOAT32, scores),
        _kv_array("tokenizer.ggml.token_type", T_INT32, types),
        _kv("tokenizer.ggml.bos_token_id", T_UINT32, 1),
        _kv("tokenizer.ggml.eos_token_id", T_UINT32, 2),
        _kv("tokenizer.ggml.unknown_token_id", T_UINT32, 0),
    ]
    tensors = tensor_list(s, vocab)
    infos, offset = [], 0
    for name, shp in tensors:
        ggml_type, size = (GGML_F32, 4) if len(shp) == 1 else (GGML_F16, 2)
        dims = tuple(reversed(shp))  # GGUF lists the innermost dimension first
        infos.append(_str(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, ggml_type, offset))
        offset += -(-int(np.prod(shp)) * size // ALIGN) * ALIGN

    # Random values from one pool, each tensor a different rotation of it: generating 6.7 G
    # normal samples would take longer than the benchmark.
    pool = (np.random.default_rng(seed).standard_normal(1 << 22) * 0.02).astype(np.float16)
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
        f.write(b"".join(meta))
        f.write(b"".join(infos))
        f.write(b"\0" * (-f.tell() % ALIGN))
        for k, (name, shp) in enumerate(tensors):
            if len(shp) == 1:
                data = np.ones(shp, np.float32).tobytes()
            else:
                n = int(np.prod(shp))
                data = np.resize(np.roll(pool, k * 7919), n).tobytes()
            f.write(data)
            f.write(b"\0" * (-len(data) % ALIGN))


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
