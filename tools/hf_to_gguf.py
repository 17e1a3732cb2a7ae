#!/usr/bin/python3
"""A Hugging Face LLaMA checkpoint as a GGUF file, so llama.cpp runs the same weights beside stackllama.

    tools/hf_to_gguf.py ../shared/data/stories260K-hf -o /tmp/s260k-f32.gguf --type f32
    llama-quantize /tmp/s260k-f32.gguf /tmp/s260k-q8_0.gguf q8_0
    llama-simple -m /tmp/s260k-q8_0.gguf -n 200 ""          # greedy, beside:
    build/stackllama -m ../shared/data/stories260K-hf --raw -p "" -n 200 --temp 0 --quantize q8

It reads what stackllama reads (config.json, tokenizer.model, model.safetensors or shards listed in
model.safetensors.index.json; F32, F16 or BF16) one tensor at a time, so a 7B model converts in
little memory. llama.cpp's own converter needs Python packages Debian does not ship; this needs
numpy and sentencepiece only. Matrices are written f32 or f16 (--type), norms f32.

Hugging Face stores each q and k head's rotary pairs as halves (rotate_half); llama.cpp's "llama"
architecture wants them adjacent, as Meta's checkpoints have them, so those rows are permuted back.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gguf_write as gw  # noqa: E402


class ConvertError(Exception):
    pass


def _safetensors_index(path: Path) -> dict[str, tuple[Path, int, str, list[int], int, int]]:
    """name -> (file, data start, dtype, shape, begin, end) for one .safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ConvertError(f"{path}: shorter than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise ConvertError(f"{path}: header length {n} is not plausible")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ConvertError(f"{path}: header is not JSON ({e})") from None
    return {k: (path, 8 + n, v["dtype"], v["shape"], *v["data_offsets"])
            for k, v in header.items() if k != "__metadata__"}


def open_weights(model_dir: Path) -> dict[str, tuple]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (model_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ConvertError(f"{model_dir}: no model.safetensors or model.safetensors.index.json "
                           "(PyTorch .bin checkpoints: convert with stackllama-convert first)")
    out: dict[str, tuple] = {}
    for name in files:
        out.update(_safetensors_index(model_dir / name))
    return out


def load(entry: tuple) -> np.ndarray:
    path, start, dtype, shape, begin, end = entry
    kinds = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2)}
    if dtype not in kinds:
        raise ConvertError(f"{path}: tensor dtype {dtype} (F32, F16 or BF16 only)")
    np_type, size = kinds[dtype]
    count = int(np.prod(shape))
    if end - begin != count * size or start + end > path.stat().st_size:
        raise ConvertError(f"{path}: a tensor's data_offsets do not match its shape or the file")
    a = np.memmap(path, np_type, "r", start + begin, (count,))
    if dtype == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(a, np.float32).reshape(shape)


def unrotate(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of each head from [x0..x(d/2-1), y0..] (rotate_half) to [x0, y0, x1, y1, ...]."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def convert(model_dir: Path, out: Path, out_type: str) -> int:
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise ConvertError(f"{model_dir}: no config.json")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise ConvertError(f"{cfg_path}: not JSON ({e})") from None
    if cfg.get("model_type") != "llama":
        raise ConvertError(f"{cfg_path}: model_type {cfg.get('model_type')!r}, not 'llama'")
    for key in ("rope_scaling", "attention_bias", "mlp_bias"):
        if cfg.get(key):
            raise ConvertError(f"{cfg_path}: {key} is set; this converter writes plain LLaMA only")
    tok = model_dir / "tokenizer.model"
    if not tok.is_file():
        raise ConvertError(f"{model_dir}: no tokenizer.model (a SentencePiece LLaMA tokenizer)")
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    if cfg.get("head_dim", h // heads) != h // heads:
        raise ConvertError(f"{cfg_path}: head_dim {cfg['head_dim']} is not hidden_size / heads")
    weights = open_weights(model_dir)
    matrix = gw.GGML_F32 if out_type == "f32" else gw.GGML_F16

    def tensor(name: str, hf: str, heads_to_unrotate: int = 0):
        if hf not in weights:
            raise ConvertError(f"{model_dir}: tensor {hf} is missing")
        shape = tuple(weights[hf][3])
        values = (lambda: unrotate(load(weights[hf]), heads_to_unrotate)) if heads_to_unrotate \
            else (lambda: load(weights[hf]))
        return (name, shape, gw.GGML_F32 if len(shape) == 1 else matrix, values)

    tensors = [tensor("token_embd.weight", "model.embed_tokens.weight")]
    for i in range(layers):
        p, q = f"blk.{i}.", f"model.layers.{i}."
        tensors += [tensor(p + "attn_norm.weight", q + "input_layernorm.weight"),
                    tensor(p + "attn_q.weight", q + "self_attn.q_proj.weight", heads),
                    tensor(p + "attn_k.weight", q + "self_attn.k_proj.weight", kv_heads),
                    tensor(p + "attn_v.weight", q + "self_attn.v_proj.weight"),
                    tensor(p + "attn_output.weight", q + "self_attn.o_proj.weight"),
                    tensor(p + "ffn_norm.weight", q + "post_attention_layernorm.weight"),
                    tensor(p + "ffn_gate.weight", q + "mlp.gate_proj.weight"),
                    tensor(p + "ffn_up.weight", q + "mlp.up_proj.weight"),
                    tensor(p + "ffn_down.weight", q + "mlp.down_proj.weight")]
    tensors.append(tensor("output_norm.weight", "model.norm.weight"))
    # Tied embeddings: llama.cpp uses token_embd when output.weight is absent.
    if "lm_head.weight" in weights and not cfg.get("tie_word_embeddings", False):
        tensors.append(tensor("output.weight", "lm_head.weight"))
    meta = gw.llama_metadata(model_dir.name, gw.FILE_TYPE_ALL_F32 if out_type == "f32" else
                             gw.FILE_TYPE_MOSTLY_F16, hidden=h, layers=layers, heads=heads,
                             kv_heads=kv_heads, ffn=cfg["intermediate_size"],
                             context=cfg.get("max_position_embeddings", 2048),
                             eps=cfg.get("rms_norm_eps", 1e-6),
                             rope_theta=cfg.get("rope_theta", 10000.0), tokenizer=tok,
                             bos=cfg.get("bos_token_id", 1), eos=cfg.get("eos_token_id", 2))
    gw.write(out, meta, tensors)
    return len(tensors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path, help="a Hugging Face LlamaForCausalLM directory")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--type", choices=("f32", "f16"), default="f16",
                    help="type of the matrices (norms are always f32)")
    a = ap.parse_args(argv)
    try:
        n = convert(a.model_dir, a.output, a.type)
    except ConvertError as e:
        print(f"hf_to_gguf: {e}", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"hf_to_gguf: {a.model_dir}: config.json or a safetensors header lacks {e}",
              file=sys.stderr)
        return 2
    print(f"wrote {a.output}: {n} tensors, {a.output.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
