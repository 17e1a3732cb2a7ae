"""Writing LLaMA models as GGUF files for llama.cpp, so it can run beside stackllama on one machine.

Used by tools/random_gguf.py (random weights of the benchmark shapes) and tools/hf_to_gguf.py (a
Hugging Face checkpoint's real weights). The layout is GGUF v3 (github.com/ggml-org/ggml,
docs/gguf.md): header, key-value metadata, tensor infos (dimensions innermost first), then the
tensor data, each tensor aligned to 32 bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

ALIGN = 32
# Metadata value types.
T_UINT32, T_INT32, T_FLOAT32, T_STRING, T_ARRAY = 4, 5, 6, 8, 9
# Tensor types, and general.file_type values, used here.
GGML_F32, GGML_F16 = 0, 1
FILE_TYPE_ALL_F32, FILE_TYPE_MOSTLY_F16 = 0, 1
# tokenizer.ggml.token_type values.
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_BYTE = 1, 2, 3, 6

_ELEMENT = {GGML_F32: np.float32, GGML_F16: np.float16}


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv(key: str, vtype: int, value) -> bytes:
    out = _str(key) + struct.pack("<I", vtype)
    if vtype == T_UINT32:
        return out + struct.pack("<I", value)
    if vtype == T_FLOAT32:
        return out + struct.pack("<f", value)
    if vtype == T_STRING:
        return out + _str(value)
    raise ValueError(f"unsupported metadata type {vtype}")


def kv_array(key: str, etype: int, values) -> bytes:
    out = _str(key) + struct.pack("<IIQ", T_ARRAY, etype, len(values))
    if etype == T_STRING:
        return out + b"".join(_str(v) for v in values)
    fmt = {T_FLOAT32: "f", T_INT32: "i"}[etype]
    return out + struct.pack(f"<{len(values)}{fmt}", *values)


def read_vocab(path: Path) -> tuple[list[bytes], list[float], list[int]]:
    """A SentencePiece tokenizer.model's pieces, scores and GGUF token types."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(path))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i).encode())
        scores.append(sp.get_score(i))
        types.append(TOKEN_UNKNOWN if sp.is_unknown(i) else TOKEN_CONTROL if sp.is_control(i)
                     else TOKEN_BYTE if sp.is_byte(i) else TOKEN_NORMAL)
    return tokens, scores, types


def llama_metadata(name: str, file_type: int, *, hidden: int, layers: int, heads: int,
                   kv_heads: int, ffn: int, context: int, eps: float, rope_theta: float,
                   tokenizer: Path, bos: int = 1, eos: int = 2, unk: int = 0) -> list[bytes]:
    """The metadata llama.cpp's "llama" architecture reads, with the tokenizer's vocabulary."""
    tokens, scores, types = read_vocab(tokenizer)
    return [
        kv("general.architecture", T_STRING, "llama"),
        kv("general.name", T_STRING, name),
        kv("general.file_type", T_UINT32, file_type),
        kv("general.alignment", T_UINT32, ALIGN),
        kv("llama.context_length", T_UINT32, context),
        kv("llama.embedding_length", T_UINT32, hidden),
        kv("llama.block_count", T_UINT32, layers),
        kv("llama.feed_forward_length", T_UINT32, ffn),
        kv("llama.attention.head_count", T_UINT32, heads),
        kv("llama.attention.head_count_kv", T_UINT32, kv_heads),
        kv("llama.rope.dimension_count", T_UINT32, hidden // heads),
        kv("llama.rope.freq_base", T_FLOAT32, rope_theta),
        kv("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, eps),
        kv("tokenizer.ggml.model", T_STRING, "llama"),
        kv_array("tokenizer.ggml.tokens", T_STRING, tokens),
        kv_array("tokenizer.ggml.scores", T_FLOAT32, scores),
        kv_array("tokenizer.ggml.token_type", T_INT32, types),
        kv("tokenizer.ggml.bos_token_id", T_UINT32, bos),
        kv("tokenizer.ggml.eos_token_id", T_UINT32, eos),
        kv("tokenizer.ggml.unknown_token_id", T_UINT32, unk),
    ]


def write(path: Path, meta: list[bytes],
          tensors: Iterable[tuple[str, tuple[int, ...], int, Callable[[], np.ndarray]]]) -> None:
    """tensors: (llama.cpp name, numpy shape, GGML_F32 or GGML_F16, a function giving the values).

    The values are asked for one tensor at a time while writing, so a 7B model never has to be in
    memory at once.
    """
    tensors = list(tensors)
    infos, offset = [], 0
    for name, shape, ggml_type, _ in tensors:
        dims = tuple(reversed(shape))  # GGUF lists the innermost dimension first
        infos.append(_str(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, ggml_type, offset))
        nbytes = int(np.prod(shape)) * np.dtype(_ELEMENT[ggml_type]).itemsize
        offset += -(-nbytes // ALIGN) * ALIGN
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
        f.write(b"".join(meta))
        f.write(b"".join(infos))
        f.write(b"\0" * (-f.tell() % ALIGN))
        for name, shape, ggml_type, values in tensors:
            a = np.ascontiguousarray(values(), _ELEMENT[ggml_type])
            if a.shape != tuple(shape):
                raise ValueError(f"{name}: values of shape {a.shape}, declared {tuple(shape)}")
            data = a.tobytes()
            f.write(data)
            f.write(b"\0" * (-len(data) % ALIGN))
