"""Rewrites a Hugging Face safetensors checkpoint as the PyTorch pickle layout of 2023-era models
(huggyllama/llama-7b): pytorch_model.bin, or shards pytorch_model-0000N-of-0000M.bin with
pytorch_model.bin.index.json, written by torch.save itself.

    save_as_pytorch_checkpoint.py SRC_DIR DST_DIR [--shards N]
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from llama_ref import read_weights  # noqa: E402  (the reference's own safetensors reader)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32",
                    help="storage type (the source's values must be exact in it)")
    a = ap.parse_args()
    os.makedirs(a.dst, exist_ok=True)
    shutil.copy(os.path.join(a.src, "config.json"), os.path.join(a.dst, "config.json"))
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    tensors = {n: t.to(dtype) for n, t in read_weights(Path(a.src)).items()}
    names = list(tensors)
    if a.shards == 1:
        torch.save({n: tensors[n] for n in names}, os.path.join(a.dst, "pytorch_model.bin"))
        return
    per = (len(names) + a.shards - 1) // a.shards
    weight_map = {}
    for i in range(a.shards):
        part = names[i * per:(i + 1) * per]
        fname = f"pytorch_model-{i + 1:05d}-of-{a.shards:05d}.bin"
        torch.save({n: tensors[n] for n in part}, os.path.join(a.dst, fname))
        weight_map.update({n: fname for n in part})
    with open(os.path.join(a.dst, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)


if __name__ == "__main__":
    main()
