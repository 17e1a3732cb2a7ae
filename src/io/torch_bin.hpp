// PyTorch checkpoints written by torch.save (PyTorch >= 1.6): a ZIP archive holding
// `<archive>/data.pkl`, a pickle of the state dict whose tensors name their storages through
// persistent ids, and one stored entry `<archive>/data/<key>` per storage. The pickle is read,
// never executed (io/pickle.hpp): only the globals that rebuild tensors are accepted.
#pragma once

#include <string>

#include "io/tensor_set.hpp"

namespace stackllama::io {

// Maps one .bin file and adds its tensors (a dict or OrderedDict of name -> tensor) to `set`.
// Storages of float32, float16 and bfloat16 are read; contiguous tensors stay in the mapped
// file, non-contiguous views are copied into a contiguous buffer the set keeps alive.
// Error(format) naming the file and the entry or tensor at fault for malformed, truncated or
// inconsistent files; Error(unsupported) for other dtypes, compressed entries, forbidden pickle
// globals and the legacy (pre-1.6, non-zip) format.
void read_torch_bin(const std::string& path, TensorSet& set);

// A checkpoint directory: `pytorch_model.bin`, or the shards listed by
// `pytorch_model.bin.index.json`. Error(io) when neither exists or a shard is missing.
TensorSet open_torch_bin_dir(const std::string& dir);

}  // namespace stackllama::io
