"""Where the Python tests find their data. CTest (tests/CMakeLists.txt) sets:

  STACKLLAMA_TEST_MODEL      the build's default model (build/tiny-model)
  STACKLLAMA_TEST_ADAPTER    a LoRA adapter for it (tests/capi_fixture.py)
  STACKLLAMA_TEST_RM_ADAPTER a reward LoRA for it (SEQ_CLS, `score` saved)
  STACKLLAMA_TEST_REFERENCE  what the C++ API computed for it (tests/capi_reference.cpp)
  STACKLLAMA_LIB             libstackllama.so, for the ctypes layer
  STACKLLAMA_SHARED_DATA     ../shared/data (may be absent: those tests skip unless CI=true)
  STACKLLAMA_SOURCE_DIR      the source tree

and puts the built package on PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REFERENCE_SETTINGS = dict(n_threads=2, max_new_tokens=32, adapter_scale=0.75)


def _env_path(name: str) -> Path:
    value = os.environ.get(name)
    if not value or not Path(value).exists():
        pytest.skip(f"{name} is not set or missing ({value!r}); run through ctest")
    return Path(value)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return _env_path("STACKLLAMA_TEST_MODEL")


@pytest.fixture(scope="session")
def adapter_dir() -> Path:
    return _env_path("STACKLLAMA_TEST_ADAPTER")


@pytest.fixture(scope="session")
def rm_adapter_dir() -> Path:
    return _env_path("STACKLLAMA_TEST_RM_ADAPTER")


@pytest.fixture(scope="session")
def source_dir() -> Path:
    value = os.environ.get("STACKLLAMA_SOURCE_DIR")
    return Path(value) if value else Path(__file__).resolve().parents[3]


class Reference:
    """The files of tests/capi_reference.cpp."""

    def __init__(self, root: Path):
        self.root = root
        self.prompt = (root / "prompt.txt").read_text(encoding="utf-8")
        self.prompt_ids = self.ids("prompt.ids")

    def ids(self, name: str) -> list[int]:
        return [int(t) for t in (self.root / name).read_text().split()]

    def tokens(self, case: str) -> list[int]:
        return self.ids(f"{case}.tokens")

    def text(self, case: str) -> str:
        return (self.root / f"{case}.text").read_bytes().decode("utf-8")

    def floats(self, name: str) -> np.ndarray:
        return np.fromfile(self.root / name, dtype="<f4")

    def best_of_n(self) -> list[tuple[int, float, list[int]]]:
        rows = []
        for line in (self.root / "best_of_n.txt").read_text().splitlines():
            index, reward, *tokens = line.split()
            rows.append((int(index), float(np.float32(reward)), [int(t) for t in tokens]))
        return rows

    def logits(self, case: str, n_vocab: int) -> np.ndarray:
        return np.fromfile(self.root / f"{case}.logits.f32", dtype="<f4").reshape(-1, n_vocab)


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference(_env_path("STACKLLAMA_TEST_REFERENCE"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    value = os.environ.get("STACKLLAMA_SHARED_DATA", "")
    if value and Path(value).is_dir():
        return Path(value)
    if os.environ.get("CI") == "true":
        pytest.fail(f"../shared/data is missing at {value!r} but CI=true: data tests must run")
    pytest.skip(f"../shared/data not found at {value!r} (a fresh clone has no shared data)")


@pytest.fixture(scope="session")
def slow_model_dir(tmp_path_factory, model_dir: Path, source_dir: Path) -> Path:
    """A random model large enough that a long generation takes seconds (hidden 512, 6 layers;
    the default model's tokenizer), for the interrupt, cancel and GIL tests."""
    out = tmp_path_factory.mktemp("slow") / "model"
    subprocess.run(
        [sys.executable, str(source_dir / "tools" / "make_llama_fixture.py"), str(out),
         "--hidden", "512", "--layers", "6", "--heads", "8", "--kv-heads", "8", "--ffn", "1536",
         "--vocab", "600", "--max-pos", "4096", "--seed", "5",
         "--tokenizer", str(model_dir / "tokenizer.model")],
        check=True, capture_output=True)
    return out
