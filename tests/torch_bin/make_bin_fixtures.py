#!/usr/bin/env python3
"""Writes the torch .bin fixtures of tests/torch_bin_test.cpp into OUTDIR.

Real checkpoints come from torch.save (Debian's torch); the expected values of every tensor go to
OUTDIR/expected.json as {"<file or dir>": {"<tensor>": {"dtype", "shape", "values"}}}, values as
float32 numbers in row-major order. Hostile files go to OUTDIR/hostile/: they are written as bytes
(or pickled without being loaded) and are never unpickled here.
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import torch

OUT = sys.argv[1]
EXPECTED = {}
DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def path(*parts):
    p = os.path.join(OUT, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def expect(key, sd):
    entry = EXPECTED.setdefault(key, {})
    for name, t in sd.items():
        entry[name] = {
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "values": t.detach().float().contiguous().reshape(-1).tolist(),
        }


def save(rel, sd, **kw):
    torch.save(sd, path(rel), **kw)
    expect(rel, sd)


gen = torch.Generator().manual_seed(1234)


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen).to(dtype)


# --- valid checkpoints written by torch.save ---
for dtype, name in [(torch.float32, "f32"), (torch.float16, "f16"), (torch.bfloat16, "bf16")]:
    save(f"{name}/pytorch_model.bin", {
        "model.embed_tokens.weight": randn(16, 8, dtype=dtype),
        "model.layers.0.self_attn.q_proj.weight": randn(8, 8, dtype=dtype),
        "model.norm.weight": randn(8, dtype=dtype),
        "cube": randn(2, 3, 4, dtype=dtype),
        "scalar": torch.tensor(2.5, dtype=dtype),          # 0-d
        "empty": torch.zeros(0, 4, dtype=dtype),           # no elements
    })

# A module's state_dict(): an OrderedDict carrying a _metadata attribute (pickled with BUILD).
module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
with torch.no_grad():
    for p in module.parameters():
        p.copy_(randn(*p.shape))
save("ordered/pytorch_model.bin", module.state_dict())

# Views sharing one storage: offsets, a transposed weight, slices with steps, a broadcast.
base = randn(6, 8)
half = randn(5, 7, dtype=torch.float16)
save("views/pytorch_model.bin", collections.OrderedDict([
    ("base", base),
    ("row2", base[2]),                    # offset 16, contiguous
    ("rows1to3", base[1:4]),              # offset 8, contiguous
    ("flat_tail", base.view(-1)[5:20]),   # offset 5
    ("transposed", base.t()),             # non-contiguous
    ("cols", base[:, 1:3]),               # non-contiguous, offset 1
    ("stepped", base[::2, ::3]),          # non-contiguous
    ("broadcast", randn(3, 1).expand(3, 4)),
    ("half_t", half.t()),
    ("half_row", half[4]),
    ("single_col", base[:, 5:6]),         # [6, 1], stride [8, 1]: non-contiguous
    ("unit_dims", base[3:4, 2:3]),        # [1, 1]: contiguous whatever its strides
]))

# Parameters, and pickle protocols 4 and 5 (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL).
save("param/pytorch_model.bin", {"p": torch.nn.Parameter(randn(3, 2)), "t": randn(4)})
save("proto4/pytorch_model.bin", {"a": randn(3, 5), "b": randn(2, dtype=torch.bfloat16),
                                  "c": randn(4, 3).t()}, pickle_protocol=4)
save("proto5/pytorch_model.bin", {"a": randn(2, 2, dtype=torch.float16)}, pickle_protocol=5)

# A sharded checkpoint with its index, as transformers' save_pretrained writes it.
shards = {
    "pytorch_model-00001-of-00002.bin": {"w1": randn(4, 4), "w2": randn(4)},
    "pytorch_model-00002-of-00002.bin": {"w3": randn(2, 3, dtype=torch.bfloat16)},
}
weight_map = {}
for shard, sd in shards.items():
    torch.save(sd, path("sharded", shard))
    expect("sharded", sd)
    weight_map.update({k: shard for k in sd})
with open(path("sharded", "pytorch_model.bin.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)

# Valid files stackllama refuses: the legacy format, other dtypes, something not a state dict.
torch.save({"a": torch.ones(2)}, path("legacy", "pytorch_model.bin"),
           _use_new_zipfile_serialization=False)
torch.save({"ok": torch.ones(2), "ids": torch.arange(3)}, path("refused", "int64.bin"))
torch.save(torch.ones(2), path("refused", "bare_tensor.bin"))
torch.save({"nested": {"a": torch.ones(2)}}, path("refused", "nested_dict.bin"))


# --- crafted archives: a zip in torch's layout around a pickle written here ---
def write_zip(rel, pkl, storages=None, compress=(), prefix="archive/"):
    with zipfile.ZipFile(path(rel), "w", zipfile.ZIP_STORED) as z:
        z.writestr(prefix + "data.pkl", pkl)
        for key, data in (storages or {}).items():
            method = zipfile.ZIP_DEFLATED if key in compress else zipfile.ZIP_STORED
            z.writestr(prefix + "data/" + key, data, compress_type=method)
        z.writestr(prefix + "version", "3\n")


class FakeStorage:
    def __init__(self, storage_type, key, numel):
        self.pid = ("storage", storage_type, key, "cpu", numel)


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, FakeStorage) else None


def dumps(obj, protocol=2):
    buf = io.BytesIO()
    TorchPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


class FakeTensor:
    """Pickles as _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class FromTypeTensor:
    """A tensor with Python state, as newer torch pickles it: _rebuild_from_type_v2."""

    def __init__(self, inner):
        self.inner = inner

    def __reduce__(self):
        return (torch._tensor._rebuild_from_type_v2,
                (torch._utils._rebuild_tensor_v2, torch.Tensor, self.inner.args, {"note": 1}))


f32 = struct.Struct("<f")
four = b"".join(f32.pack(x) for x in [1.0, 2.0, 3.0, 4.0])

# Valid but hand-made: checked against torch.load so that the crafting is right.
write_zip("crafted/from_type.bin",
          dumps({"x": FromTypeTensor(FakeTensor(FakeStorage(torch.FloatStorage, "0", 4), 1,
                                                [3], [1]))}),
          {"0": four}, prefix="some_folder/")
loaded = torch.load(path("crafted/from_type.bin"))
assert loaded["x"].tolist() == [2.0, 3.0, 4.0]
expect("crafted/from_type.bin", loaded)

# A storage shorter than its tensor: 4 floats viewed as 100.
write_zip("hostile/short_storage.bin",
          dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "0", 4), 0, [100], [1])}),
          {"0": four})
# A storage id claiming more elements than its entry holds.
write_zip("hostile/short_entry.bin",
          dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "0", 100), 0, [100], [1])}),
          {"0": four})
# A view whose offset runs past the storage.
write_zip("hostile/offset_past.bin",
          dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "0", 4), 3, [2], [1])}),
          {"0": four})
# A compressed storage entry.
write_zip("hostile/compressed.bin",
          dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "0", 4), 0, [4], [1])}),
          {"0": four}, compress={"0"})
# A missing storage entry.
write_zip("hostile/missing_storage.bin",
          dumps({"w": FakeTensor(FakeStorage(torch.FloatStorage, "7", 4), 0, [4], [1])}),
          {"0": four})


# The pickles below would run a command if unpickled by Python; the test checks that loading
# them names the forbidden global and that the marker file does not appear.
MARKER = path("hostile", "MARKER")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + MARKER,))


# Protocol 2 with GLOBAL 'os system', written by hand (pickle itself would say posix.system).
cmd = ("touch " + MARKER).encode()
evil2 = (b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01cos\nsystem\nq\x02X" + struct.pack("<I", len(cmd))
         + cmd + b"\x85R\x73.")
write_zip("hostile/os_system.bin", evil2, {"0": four})
# Protocol 4 via __reduce__: STACK_GLOBAL posix.system, inside a state dict.
write_zip("hostile/posix_system.bin", pickle.dumps({"w": Evil()}, protocol=4), {"0": four})
# eval via builtins, at protocol 2 through the normal pickler.
write_zip("hostile/builtins_eval.bin",
          pickle.dumps({"w": type("E", (), {"__reduce__": lambda s: (eval, ("1",))})()},
                       protocol=2))

# Malformed pickles.
write_zip("hostile/unknown_opcode.bin", b"\x80\x02}q\x00\xff.")
write_zip("hostile/deep_nesting.bin", b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b".")
write_zip("hostile/mark_bomb.bin", b"\x80\x02" + b"(" * 100000 + b"N.")
write_zip("hostile/huge_memo.bin", b"\x80\x02Nr" + struct.pack("<I", 0xFFFFFFF0) + b".")
write_zip("hostile/undefined_memo.bin", b"\x80\x02}h\x07.")
write_zip("hostile/string_bomb.bin", b"\x80\x04\x8d" + struct.pack("<Q", 1 << 62) + b"abc.")
write_zip("hostile/no_stop.bin", b"\x80\x02}q\x00")
write_zip("hostile/not_a_pickle_zip.bin", b"", prefix="")

with open(path("expected.json"), "w") as f:
    json.dump(EXPECTED, f)
print("fixtures written to", OUT)
