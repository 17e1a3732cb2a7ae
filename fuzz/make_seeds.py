#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets (fuzz/README.md) from real files.

    make_seeds.py --out DIR [--shared-data ../shared/data] [--fixtures build/tests/fixtures]

DIR/<target>/ gets small inputs built from what exists: the random Hugging Face checkpoints of the
test fixtures (tests/reference/make_model_fixtures.py), ../shared/data (stories260K-hf, the LLaMA
tokenizer's config), checkpoints written here with torch.save (when torch imports), and a few
hand-written cases for each field the parsers read. Real model files are hundreds of KiB, so
safetensors seeds keep the real headers (names, dtypes, order) with every dimension cut to at
most 4; the fuzzers spend their time in the headers, not in megabytes of weights. Nothing here is
committed: the corpora are rebuilt from the repository on every machine. The run is
deterministic.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
              "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors_bytes(tensors: list[tuple[str, str, list[int]]], metadata: dict | None = None,
                      rng: random.Random | None = None) -> bytes:
    """A safetensors file: 8-byte length, JSON header padded to 8, data (random bytes)."""
    rng = rng or random.Random(0)
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = bytearray()
    for name, dtype, shape in tensors:
        n = DTYPE_SIZE[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        if dtype in ("F32",):
            data += b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(n // 4))
        else:
            data += bytes(rng.randrange(256) for _ in range(n))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(data)


def read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def mini_of(path: Path, max_tensors: int = 24) -> bytes:
    """The real header of `path` with every dimension cut to at most 4 (fresh offsets, data)."""
    h = read_header(path)
    meta = h.pop("__metadata__", None)
    entries = sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0])[:max_tensors]
    tensors = [(k, v["dtype"], [min(int(d), 4) for d in v["shape"]]) for k, v in entries]
    return safetensors_bytes(tensors, meta, random.Random(len(tensors)))


def write(dirpath: Path, name: str, data: bytes | str) -> None:
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / name).write_bytes(data.encode() if isinstance(data, str) else data)


def jdump(obj) -> str:
    return json.dumps(obj, indent=2)


# ------------------------------------------------------------------------- safetensors


def seeds_safetensors(out: Path, checkpoints: list[Path]) -> None:
    d = out / "safetensors"
    for i, p in enumerate(checkpoints):
        write(d, f"mini-{i:02d}-{p.parent.name}-{p.stem}.safetensors", mini_of(p))
    if checkpoints:  # one real file, cut: a real header whose data runs past the end
        raw = checkpoints[0].read_bytes()
        write(d, "real-cut.safetensors", raw[: min(len(raw), 60000)])
    write(d, "empty-header.safetensors", safetensors_bytes([]))
    write(d, "metadata-only.safetensors", safetensors_bytes([], {"format": "pt"}))
    write(d, "all-dtypes.safetensors",
          safetensors_bytes([(f"t_{k.lower()}", k, [2, 3]) for k in DTYPE_SIZE], {"format": "pt"}))
    write(d, "zero-size.safetensors", safetensors_bytes([("e", "F32", [0, 4]), ("s", "F16", [])]))
    write(d, "llama-names.safetensors", safetensors_bytes(
        [("model.embed_tokens.weight", "BF16", [4, 2]), ("model.norm.weight", "F32", [2]),
         ("model.layers.0.self_attn.q_proj.weight", "F16", [2, 2]),
         ("lm_head.weight", "BF16", [4, 2])], {"format": "pt"}))


def seeds_safetensors_index(out: Path, indexes: list[Path]) -> None:
    d = out / "safetensors_index"
    shards = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
              "model-00003-of-00003.safetensors"]
    full = {"metadata": {"total_size": 60},
            "weight_map": {"a": shards[0], "b": shards[0], "c": shards[1], "d": shards[2]}}
    write(d, "full.json", jdump(full))
    write(d, "partial.json", jdump({"weight_map": {"a": shards[0], "c": shards[1]}}))
    write(d, "wrong-shard.json", jdump({"weight_map": {"a": shards[1]}}))
    write(d, "damaged-shard.json", jdump({"weight_map": {"x": "damaged.safetensors"}}))
    write(d, "missing-shard.json", jdump({"weight_map": {"a": "model-00009-of-00009.safetensors"}}))
    write(d, "empty.json", jdump({"weight_map": {}}))
    for i, p in enumerate(indexes):  # real indexes: their shard names are not in the folder
        write(d, f"real-{i}.json", p.read_text())


# ------------------------------------------------------------------------- torch .bin


def seeds_torch_bin(out: Path) -> None:
    d = out / "torch_bin"
    d.mkdir(parents=True, exist_ok=True)
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means "no torch seeds"
        print(f"make_seeds: torch not importable ({e}); torch_bin gets the hand-made seeds only")
        torch = None
    if torch is not None:
        torch.manual_seed(0)

        def save(name: str, obj, **kw) -> None:
            buf = io.BytesIO()
            torch.save(obj, buf, **kw)
            write(d, name, buf.getvalue())

        base = torch.randn(4, 6)
        save("state-dict-f32-f16-bf16.bin", OrderedDict([
            ("model.embed_tokens.weight", torch.randn(5, 4)),
            ("model.norm.weight", torch.randn(4).half()),
            ("lm_head.weight", torch.randn(5, 4).bfloat16())]))
        save("views.bin", {"t": base.t(), "step": base[:, ::2], "offset": base[1:3],
                           "same": base})
        save("parameter.bin", {"p": torch.nn.Parameter(torch.randn(3, 2))})
        save("linear-state-dict.bin", torch.nn.Linear(4, 3, bias=True).state_dict())
        save("zero-and-scalar.bin", {"e": torch.zeros(0, 3), "s": torch.tensor(2.5)})
        save("int64.bin", {"i": torch.arange(6)})
        save("nested.bin", {"a": {"b": torch.ones(2)}})
        save("expand.bin", {"x": torch.ones(1, 3).expand(4, 3)})
        save("legacy.bin", {"w": torch.ones(2)}, _use_new_zipfile_serialization=False)
        sd = OrderedDict()
        for layer in range(2):
            for proj, out_f in (("q_proj", 8), ("v_proj", 4)):
                key = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
                sd[f"{key}.lora_A.weight"] = torch.randn(2, 8)
                sd[f"{key}.lora_B.weight"] = torch.randn(out_f, 2)
        save("peft-adapter.bin", sd)
    # Hand-made: a zip that is not a checkpoint, and one whose pickle names a forbidden global.
    for name, entries in (
        ("not-a-checkpoint.bin", {"archive/readme.txt": b"hello"}),
        ("forbidden-global.bin", {"archive/data.pkl": b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls"
                                                      b"\x85R.",
                                  "archive/byteorder": b"little"}),
        ("empty-dict.bin", {"archive/data.pkl": b"\x80\x02}q\x00.",
                            "archive/byteorder": b"little"}),
    ):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for n, b in entries.items():
                z.writestr(n, b)
        write(d, name, buf.getvalue())


# ------------------------------------------------------------------------- JSON configs


def seeds_model_config(out: Path, configs: list[Path]) -> None:
    d = out / "model_config"
    for i, p in enumerate(configs):
        write(d, f"real-{i:02d}-{p.parent.name}.json", p.read_text())
    minimal = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
               "num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 320}
    write(d, "minimal.json", jdump(minimal))
    write(d, "model-type-only.json", jdump({**{k: v for k, v in minimal.items()
                                               if k != "architectures"}, "model_type": "llama"}))
    write(d, "gqa-head-dim.json", jdump({**minimal, "num_key_value_heads": 2, "head_dim": 16,
                                         "eos_token_id": [2, 3], "bos_token_id": 1,
                                         "pad_token_id": None, "rope_theta": 500000.0,
                                         "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
                                         "max_position_embeddings": 4096}))
    write(d, "unsupported.json", jdump({**minimal, "rope_scaling": {"type": "linear",
                                                                    "factor": 2.0},
                                        "hidden_act": "gelu", "attention_bias": True}))


def seeds_adapter_config(out: Path) -> None:
    d = out / "adapter_config"
    base = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16,
            "lora_dropout": 0.05, "bias": "none", "target_modules": ["q_proj", "v_proj"],
            "base_model_name_or_path": "base", "inference_mode": True}
    write(d, "stackllama.json", jdump({**base, "r": 16, "lora_alpha": 32}))
    write(d, "regex.json", jdump({**base, "target_modules": r".*\.(q_proj|v_proj)"}))
    write(d, "all-linear.json", jdump({**base, "target_modules": "all-linear"}))
    write(d, "patterns.json", jdump({**base, "rank_pattern": {"v_proj": 4},
                                     "alpha_pattern": {"q_proj": 3.5}, "use_rslora": True}))
    write(d, "layers.json", jdump({**base, "layers_to_transform": [1],
                                   "layers_pattern": "layers"}))
    write(d, "legacy.json", jdump({"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                                   "target_modules": ["q_proj", "v_proj"], "enable_lora": None,
                                   "merge_weights": False, "fan_in_fan_out": False}))
    write(d, "unsupported.json", jdump({**base, "use_dora": True}))
    lora = "base_model.model.model.layers.{}.self_attn.{}.lora_{}.weight"
    tensors = {lora.format(0, "q_proj", "A"): {"shape": [2, 16]},
               lora.format(0, "q_proj", "B"): {"shape": [16, 2], "dtype": "BF16"},
               "base_model.model.lm_head.weight": {"shape": [32, 16]}}
    write(d, "tensors.json", jdump({**base, "r": 2, "modules_to_save": ["lm_head"],
                                    "target_modules": ["q_proj"], "__tensors__": tensors}))
    bad = dict(tensors)
    bad[lora.format(0, "q_proj", "B")] = {"shape": [16, 2], "fill": "nan"}
    write(d, "tensors-nan.json", jdump({**base, "r": 2, "target_modules": ["q_proj"],
                                        "__tensors__": bad}))
    big = {lora.format(99999999999, "q_proj", "A"): [2, 16],
           lora.format(99999999999, "q_proj", "B"): [16, 2]}
    write(d, "tensors-huge-layer.json", jdump({**base, "r": 2, "target_modules": ["q_proj"],
                                               "__tensors__": big}))


def seeds_tokenizer_config(out: Path, configs: list[Path]) -> None:
    d = out / "tokenizer_config"
    for i, p in enumerate(configs):
        write(d, f"real-{i:02d}-{p.parent.name}.json", p.read_text())
    write(d, "added-tokens.json", jdump({
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False},
        "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
        "added_tokens_decoder": {"0": {"content": "<unk>", "special": True}}}))
    write(d, "eos-too.json", jdump({"add_bos_token": False, "add_eos_token": True}))
    write(d, "prompt.txt", "Question: How do I reverse a list in Python?\n\nAnswer: ")
    write(d, "utf8.txt", "caf\u00e9 \u2603 \U0001f600 \u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--shared-data", type=Path, default=None)
    ap.add_argument("--fixtures", type=Path, default=None,
                    help="the build's tests/fixtures (models/<case>/ checkpoints), if built")
    args = ap.parse_args()

    roots: list[Path] = []
    if args.fixtures and (args.fixtures / "models").is_dir():
        roots += sorted(p for p in (args.fixtures / "models").iterdir() if p.is_dir())
    if args.shared_data and args.shared_data.is_dir():
        roots += [args.shared_data / "stories260K-hf"]
    checkpoints = [p for r in roots for p in sorted(r.glob("*.safetensors"))]
    indexes = [p for r in roots for p in sorted(r.glob("*.safetensors.index.json"))]
    configs = [r / "config.json" for r in roots if (r / "config.json").is_file()]
    tok_configs = []
    if args.shared_data and args.shared_data.is_dir():
        tok_configs = [p for p in (args.shared_data / "stories260K-hf/tokenizer_config.json",
                                   args.shared_data / "llama-tokenizer/tokenizer_config.json")
                       if p.is_file()]

    out: Path = args.out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    seeds_safetensors(tmp, checkpoints)
    seeds_safetensors_index(tmp, indexes)
    seeds_torch_bin(tmp)
    seeds_model_config(tmp, configs)
    seeds_adapter_config(tmp)
    seeds_tokenizer_config(tmp, tok_configs)
    # These targets write their own seeds into the folder (see their sources); it must exist.
    (tmp / "native_file").mkdir(exist_ok=True)
    (tmp / "kv_session").mkdir(exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    for sub in sorted(out.iterdir()):
        files = list(sub.iterdir())
        print(f"{sub.name:18} {len(files):3} seeds, {sum(f.stat().st_size for f in files):7} bytes")
    if not roots:
        print("make_seeds: no fixtures and no ../shared/data: only hand-made seeds were written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
