#!/usr/bin/python3
"""tools/random_gguf.py and tools/hf_to_gguf.py write GGUF files llama.cpp can read: checked here by
a reader of its own (the GGUF v3 layout read field by field, not through the writer's code): the
random tiny shape with stories260K's 512-piece tokenizer, and stories260K itself, whose tensors
must read back equal to its safetensors (q and k rows in llama.cpp's rotary order).

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
import hf_to_gguf  # noqa: E402
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


def read_gguf(data: bytes, expect) -> tuple[dict, list, int]:
    """(metadata, [(name, dims innermost first, type, offset)], start of the tensor data)."""
    r = Reader(data)
    expect(data[:4] == b"GGUF", "magic")
    r.p = 4
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    expect(version == 3, f"version {version}")
    kv = {}
    for _ in range(n_kv):
        key = r.string().decode()
        kv[key] = r.value(r.take("I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string().decode()
        nd = r.take("I")
        dims = [r.take("Q") for _ in range(nd)]
        infos.append((name, dims, r.take("I"), r.take("Q")))
    align = kv.get("general.alignment", 32)
    return kv, infos, -(-r.p // align) * align


def tensors(data: bytes, infos: list, start: int, align: int, expect) -> dict[str, np.ndarray]:
    """Each tensor as numpy (outermost dimension first), checking alignment, order and the end."""
    out, end = {}, start
    for name, dims, t, off in infos:
        n = int(np.prod(dims))
        expect(off % align == 0, f"{name} offset {off} not aligned")
        expect(start + off >= end, f"{name} overlaps the tensor before it")
        dtype = {0: np.float32, 1: np.float16}[t]
        out[name] = np.frombuffer(data, dtype, n, start + off).reshape(list(reversed(dims)))
        end = start + off + n * np.dtype(dtype).itemsize
    expect(len(data) == -(-end // align) * align, f"file is {len(data)} bytes, data ends at {end}")
    return out


def check_vocab(kv: dict, tokenizer: Path, expect) -> int:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    tokens = kv.get("tokenizer.ggml.tokens", [])
    expect(len(tokens) == sp.get_piece_size(), f"{len(tokens)} tokens")
    expect(all(tokens[i] == sp.id_to_piece(i).encode() for i in range(len(tokens))), "token text")
    types = kv.get("tokenizer.ggml.token_type", [])
    expect(types[:3] == [2, 3, 3], f"<unk> <s> </s> types {types[:3]}")
    expect(len(kv.get("tokenizer.ggml.scores", [])) == len(tokens), "scores")
    return len(tokens)


def check_random(path: Path, tokenizer: Path) -> list[str]:
    errors = []

    def expect(cond: bool, what: str) -> None:
        if not cond:
            errors.append("random tiny: " + what)

    data = path.read_bytes()
    kv, infos, start = read_gguf(data, expect)
    s = random_gguf.SHAPES["tiny"]
    expect(kv.get("general.architecture") == b"llama", "architecture")
    for key, want in (("llama.embedding_length", s["hidden"]), ("llama.block_count", s["layers"]),
                      ("llama.feed_forward_length", s["ffn"]),
                      ("llama.attention.head_count", s["heads"]),
                      ("llama.attention.head_count_kv", s["kv_heads"]),
                      ("llama.rope.dimension_count", s["hidden"] // s["heads"])):
        expect(kv.get(key) == want, f"{key} = {kv.get(key)}, want {want}")
    vocab = check_vocab(kv, tokenizer, expect)
    expect(len(infos) == 3 + 9 * s["layers"], f"{len(infos)} tensors")
    h = s["hidden"]
    shapes = {n: d for n, d, _, _ in infos}
    expect(shapes.get("token_embd.weight") == [h, vocab], "token_embd dims (innermost first)")
    expect(shapes.get("blk.1.ffn_down.weight") == [s["ffn"], h], "ffn_down dims")
    expect(shapes.get("blk.0.attn_k.weight") == [h, s["kv_heads"] * h // s["heads"]], "attn_k dims")
    types = {n: t for n, _, t, _ in infos}
    for name, a in tensors(data, infos, start, kv.get("general.alignment", 32), expect).items():
        if name.endswith("norm.weight"):
            expect(types[name] == 0 and bool(np.all(a == 1)), f"{name}: f32 ones")
        else:
            expect(types[name] == 1 and bool(np.all(np.isfinite(a))) and 0.01 < float(a.std()) < 0.04,
                   f"{name}: f16 values")
    return errors


def rotate_half_order(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's rotary row order back to Hugging Face's, written independently of the tool:
    row 2j + e of a head (pair j, element e) came from row e * d/2 + j."""
    d = w.shape[0] // heads
    out = np.empty_like(w)
    for hd in range(heads):
        for j in range(d // 2):
            for e in range(2):
                out[hd * d + e * d // 2 + j] = w[hd * d + 2 * j + e]
    return out


def check_stories(path: Path, model: Path, type_: str, stored=lambda a: a) -> list[str]:
    errors = []

    def expect(cond: bool, what: str) -> None:
        if not cond:
            errors.append(f"stories260K {type_}: " + what)

    import json
    from llama_ref import read_safetensors
    cfg = json.loads((model / "config.json").read_text())
    hf = read_safetensors(model / "model.safetensors")
    data = path.read_bytes()
    kv, infos, start = read_gguf(data, expect)
    for key, want in (("llama.embedding_length", cfg["hidden_size"]),
                      ("llama.block_count", cfg["num_hidden_layers"]),
                      ("llama.feed_forward_length", cfg["intermediate_size"]),
                      ("llama.attention.head_count", cfg["num_attention_heads"]),
                      ("llama.attention.head_count_kv", cfg["num_key_value_heads"]),
                      ("llama.context_length", cfg["max_position_embeddings"])):
        expect(kv.get(key) == want, f"{key} = {kv.get(key)}, want {want}")
    expect(abs(kv.get("llama.attention.layer_norm_rms_epsilon", 0) - cfg["rms_norm_eps"]) < 1e-9,
           "rms eps")
    check_vocab(kv, model / "tokenizer.model", expect)
    # Tied embeddings: no output.weight, 2 + 9 per layer.
    expect(len(infos) == 2 + 9 * cfg["num_hidden_layers"], f"{len(infos)} tensors")
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    parts = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
             "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for i in range(cfg["num_hidden_layers"]):
        for g, h in parts.items():
            names[f"blk.{i}.{g}.weight"] = f"model.layers.{i}.{h}.weight"
    types = {n: t for n, _, t, _ in infos}
    got = tensors(data, infos, start, kv.get("general.alignment", 32), expect)
    expect(sorted(got) == sorted(names), "tensor names")
    for name, a in got.items():
        want = hf[names[name]]
        a = a.astype(np.float32)
        if ".attn_q." in name:
            a = rotate_half_order(a, cfg["num_attention_heads"])
        elif ".attn_k." in name:
            a = rotate_half_order(a, cfg["num_key_value_heads"])
        matrix = a.ndim == 2
        expect(types[name] == (1 if matrix and type_ == "f16" else 0), f"{name}: type {types[name]}")
        ref = stored(want)
        ref = ref.astype(np.float16).astype(np.float32) if matrix and type_ == "f16" else ref
        expect(a.shape == want.shape and bool(np.array_equal(a, ref)), f"{name}: values differ")
    return errors


def bf16(a: np.ndarray) -> np.ndarray:
    """Rounded to bfloat16 (nearest, ties to even), as float32."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def stored_as(model: Path, dest: Path, dtype: str) -> Path:
    """stories260K with its tensors stored as F16 or BF16 (a safetensors written here)."""
    import json
    import shutil
    from llama_ref import read_safetensors
    dest.mkdir()
    for f in ("config.json", "tokenizer.model"):
        shutil.copy(model / f, dest / f)
    header, blobs, off = {}, [], 0
    for name, a in read_safetensors(model / "model.safetensors").items():
        b = (a.astype(np.float16) if dtype == "F16" else
             (bf16(a).view(np.uint32) >> 16).astype(np.uint16)).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    (dest / "model.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return dest


def check_refusals(tmp: Path, model: Path) -> list[str]:
    """Inputs the converter cannot convert end in exit 2 and a message naming the problem."""
    import contextlib
    import io
    import json
    import shutil
    cfg = json.loads((model / "config.json").read_text())

    def config(text: str):
        return lambda d: (d / "config.json").write_text(text)

    cases = [  # what, how the folder is made from stories260K's files, the message's words
        ("no config.json", lambda d: None, "no config.json"),
        ("config that is not JSON", config("{not json"), "not JSON"),
        ("no weights", config(json.dumps(cfg)), "no model.safetensors"),
        ("another architecture", config(json.dumps(dict(cfg, model_type="mistral"))),
         "model_type 'mistral'"),
        ("rope scaling", config(json.dumps(dict(cfg, rope_scaling={"type": "linear"}))),
         "rope_scaling"),
    ]
    errors = []
    for i, (what, make, needle) in enumerate(cases):
        d = tmp / f"bad{i}"
        d.mkdir()
        shutil.copy(model / "tokenizer.model", d / "tokenizer.model")
        make(d)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = hf_to_gguf.main([str(d), "-o", str(tmp / "out.gguf")])
        if rc != 2 or needle not in err.getvalue():
            errors.append(f"hf_to_gguf on {what}: exit {rc}, message {err.getvalue()!r}")
    return errors


def main() -> int:
    model = SHARED / "stories260K-hf"
    tok = model / "tokenizer.model"
    if (rc := shared_data.missing(tok)) is not None:
        return rc
    errors = []
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "tiny.gguf"
        if random_gguf.main(["--shape", "tiny", "-o", str(out), "--tokenizer", str(tok)]) != 0:
            errors.append("random_gguf.py failed")
        else:
            errors += check_random(out, tok)
        for t in ("f32", "f16"):
            out = Path(d) / f"stories-{t}.gguf"
            if hf_to_gguf.main([str(model), "-o", str(out), "--type", t]) != 0:
                errors.append(f"hf_to_gguf.py --type {t} failed")
            else:
                errors += check_stories(out, model, t)
        for dtype, rounded in (("F16", lambda a: a.astype(np.float16).astype(np.float32)),
                               ("BF16", bf16)):
            src = stored_as(model, Path(d) / f"stories-{dtype}", dtype)
            out = Path(d) / f"stories-from-{dtype}.gguf"
            if hf_to_gguf.main([str(src), "-o", str(out), "--type", "f32"]) != 0:
                errors.append(f"hf_to_gguf.py on {dtype} safetensors failed")
            else:
                errors += check_stories(out, model, "f32", rounded)
        errors += check_refusals(Path(d), model)
    for e in errors:
        print("FAIL:", e)
    if not errors:
        print("OK: the random tiny GGUF and stories260K's (f32, f16; from F32, F16 and BF16 "
              "safetensors) read back field by field; bad inputs are refused by name")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
