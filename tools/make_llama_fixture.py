#!/usr/bin/python3
"""Write a random LLaMA checkpoint directory in real Hugging Face layout.

The directory holds config.json and the weights as model.safetensors, or as
model-0000K-of-0000N.safetensors shards plus model.safetensors.index.json. Weights are
random but seeded: the same arguments always give the same bytes.

Used as a CLI (see --help) and as a module by tests/reference/make_model_fixtures.py:

    from make_llama_fixture import make_fixture
    make_fixture("out/dir", hidden=64, layers=2, heads=4, kv_heads=2, dtype="bf16")

Only numpy, json and struct: the safetensors format is written here by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

# Storage dtypes: safetensors name, bytes per element, config.json torch_dtype.
DTYPES = {
    "f32": ("F32", 4, "float32"),
    "f16": ("F16", 2, "float16"),
    "bf16": ("BF16", 2, "bfloat16"),
}


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round to nearest, ties to even); returns uint16 bits."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    # Adding 0x7FFF plus the lowest kept bit rounds half-way cases to the even neighbour.
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    bits = rounded.astype(np.uint16)
    # NaN must stay NaN (rounding could carry it into infinity): keep a quiet NaN.
    nan = np.isnan(x)
    bits[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return bits


def encode(x: np.ndarray, dtype: str) -> bytes:
    """Little-endian bytes of a float32 array stored as `dtype` (f32, f16 or bf16)."""
    if dtype == "f32":
        return x.astype("<f4").tobytes()
    if dtype == "f16":
        return x.astype("<f2").tobytes()
    if dtype == "bf16":
        return f32_to_bf16_bits(x).astype("<u2").tobytes()
    raise ValueError(f"unknown dtype {dtype}")


def safetensors_bytes(tensors: list[tuple[str, np.ndarray]], dtype: str) -> bytes:
    """One safetensors file: u64 LE header length, JSON header padded with spaces, data."""
    st_dtype = DTYPES[dtype][0]
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, array in tensors:
        blob = encode(array, dtype)
        header[name] = {
            "dtype": st_dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # The spec pads with spaces so that the data (after the 8-byte length) is 8-byte aligned.
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def init_tensors(
    rng: np.random.Generator,
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    ffn: int,
    vocab: int,
    tied: bool,
    embed_std: float | None = None,
) -> list[tuple[str, np.ndarray]]:
    """HF-named float32 tensors, in the order HF lists them.

    Linear weights are N(0, 1/fan_in) so activations keep unit scale through the layers and
    attention scores are O(1) (softmax neither uniform nor one-hot). The output head gets
    std 2/sqrt(hidden), so logits (a dot product of a unit-RMS vector with a head row) have
    a standard deviation near 2: big enough that a test at 1e-4 can fail. When tied, the
    embedding is that head, otherwise N(0,1) unless embed_std is given: a tiny embed_std
    (e.g. 0.003, so mean(x^2) is near rms_norm_eps) makes the first norm's eps matter.
    Norm weights are 1 + 0.1 N(0,1), so a missing or misplaced norm weight changes the result.
    """

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def norm_weight() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(hidden, dtype=np.float32)).astype(np.float32)

    head_std = 2.0 / np.sqrt(hidden)
    q_dim = heads * head_dim
    kv_dim = kv_heads * head_dim
    if embed_std is None:
        embed_std = head_std if tied else 1.0
    out = [("model.embed_tokens.weight", normal((vocab, hidden), embed_std))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", normal((q_dim, hidden), hidden**-0.5)),
            (p + "self_attn.k_proj.weight", normal((kv_dim, hidden), hidden**-0.5)),
            (p + "self_attn.v_proj.weight", normal((kv_dim, hidden), hidden**-0.5)),
            (p + "self_attn.o_proj.weight", normal((hidden, q_dim), q_dim**-0.5)),
            (p + "mlp.gate_proj.weight", normal((ffn, hidden), hidden**-0.5)),
            (p + "mlp.up_proj.weight", normal((ffn, hidden), hidden**-0.5)),
            (p + "mlp.down_proj.weight", normal((hidden, ffn), ffn**-0.5)),
            (p + "input_layernorm.weight", norm_weight()),
            (p + "post_attention_layernorm.weight", norm_weight()),
        ]
    out.append(("model.norm.weight", norm_weight()))
    if not tied:
        out.append(("lm_head.weight", normal((vocab, hidden), head_std)))
    return out


def split_shards(
    tensors: list[tuple[str, np.ndarray]], shards: int
) -> list[list[tuple[str, np.ndarray]]]:
    """Split tensors, in order, into `shards` non-empty groups of roughly equal size."""
    n = len(tensors)
    if not 1 <= shards <= n:
        raise ValueError(f"shards must be in 1..{n}")
    starts = np.cumsum([0] + [a.size for _, a in tensors])  # elements before tensor i
    cuts = [0]
    for j in range(1, shards):
        # First tensor at or past the j-th equal share, kept strictly increasing and leaving
        # at least one tensor for each later shard.
        c = int(np.searchsorted(starts, j * starts[-1] / shards))
        cuts.append(min(max(c, cuts[-1] + 1), n - (shards - j)))
    cuts.append(n)
    return [tensors[cuts[j]:cuts[j + 1]] for j in range(shards)]


def make_config(
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    ffn: int,
    vocab: int,
    dtype: str,
    tied: bool,
    head_dim: int | None,
    rope_theta: float,
    rms_eps: float,
    max_pos: int,
) -> dict:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": max_pos,
        "rms_norm_eps": rms_eps,
        "rope_theta": rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": DTYPES[dtype][2],
    }
    if head_dim is not None:
        config["head_dim"] = head_dim
    return config


def write_tokenizer(out: Path, tokenizer: Path) -> None:
    shutil.copyfile(tokenizer, out / "tokenizer.model")
    tok_config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")


def make_fixture(
    out_dir: str | Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    ffn: int = 96,
    vocab: int = 320,
    dtype: str = "f32",
    tied: bool = False,
    shards: int = 1,
    head_dim: int | None = None,
    rope_theta: float = 10000.0,
    rms_eps: float = 1e-6,
    max_pos: int = 512,
    seed: int = 0,
    embed_std: float | None = None,
    tokenizer: str | Path | None = None,
) -> Path:
    """Write the checkpoint into out_dir (created if needed); returns its path.

    head_dim=None leaves head_dim out of config.json (then it is hidden // heads).
    """
    kv_heads = heads if kv_heads is None else kv_heads
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}")
    if heads % kv_heads:
        raise ValueError("heads must be a multiple of kv_heads")
    hd = head_dim if head_dim is not None else hidden // heads
    if head_dim is None and hidden % heads:
        raise ValueError("hidden must be a multiple of heads when head_dim is not given")
    if hd % 2:
        raise ValueError("head_dim must be even (RoPE rotates pairs)")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = make_config(hidden, layers, heads, kv_heads, ffn, vocab, dtype, tied, head_dim,
                         rope_theta, rms_eps, max_pos)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    rng = np.random.default_rng(seed)
    tensors = init_tensors(rng, hidden, layers, heads, kv_heads, hd, ffn, vocab, tied, embed_std)
    if shards == 1:
        (out / "model.safetensors").write_bytes(safetensors_bytes(tensors, dtype))
    else:
        weight_map = {}
        for k, group in enumerate(split_shards(tensors, shards), start=1):
            fname = f"model-{k:05d}-of-{shards:05d}.safetensors"
            (out / fname).write_bytes(safetensors_bytes(group, dtype))
            weight_map.update({name: fname for name, _ in group})
        total = sum(a.size for _, a in tensors) * DTYPES[dtype][1]
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    if tokenizer is not None:
        write_tokenizer(out, Path(tokenizer))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    ap.add_argument("--ffn", type=int, default=96)
    ap.add_argument("--vocab", type=int, default=320)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--tied", action="store_true", help="tie lm_head to the embedding")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=None, help="written to config.json")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--rms-eps", type=float, default=1e-6)
    ap.add_argument("--max-pos", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embed-std", type=float, default=None,
                    help="embedding init std (default: as the head when tied, else 1)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.model to copy in")
    a = ap.parse_args(argv)
    try:
        out = make_fixture(a.out_dir, hidden=a.hidden, layers=a.layers, heads=a.heads,
                           kv_heads=a.kv_heads, ffn=a.ffn, vocab=a.vocab, dtype=a.dtype,
                           tied=a.tied, shards=a.shards, head_dim=a.head_dim,
                           rope_theta=a.rope_theta, rms_eps=a.rms_eps, max_pos=a.max_pos,
                           seed=a.seed, embed_std=a.embed_std, tokenizer=a.tokenizer)
    except (ValueError, OSError) as e:
        print(f"make_llama_fixture: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
