#!/usr/bin/python3
"""Validate llama_ref.py against the real stories260K model converted to HF layout.

Greedy decoding from BOS=1 for 200 steps must give the ids of expected_greedy_200_ids.txt
(llama2.c run.c's output), and the logits at every fed position must be within 1e-4 of
reference_logits_greedy200.f32 ([200][512] float32, row p = logits at position p).

Exit 0 on success (printing the max abs diff), 1 on a mismatch, 0 with SKIP when the shared
data folder is missing (1 when it is missing and CI=true).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_data  # noqa: E402
from llama_ref import LlamaRef  # noqa: E402

TOLERANCE = 1e-4
DEFAULT_SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED)
    a = ap.parse_args(argv)
    model_dir = a.shared_data / "stories260K-hf"
    if (rc := shared_data.missing(model_dir)) is not None:
        return rc

    expected = [int(t) for t in (model_dir / "expected_greedy_200_ids.txt").read_text().split()]
    ref_logits = np.fromfile(model_dir / "reference_logits_greedy200.f32", dtype="<f4")
    ref_logits = ref_logits.reshape(200, 512)

    ref = LlamaRef(model_dir)
    ids = ref.greedy([1], 200)

    ok = True
    if ids != expected:
        first = next(i for i, (x, y) in enumerate(zip(ids, expected)) if x != y)
        print(f"FAIL: greedy ids differ from index {first}: "
              f"got {ids[first:first + 8]}, expected {expected[first:first + 8]}")
        ok = False
    else:
        print(f"greedy ids match run.c: {len(ids)} ids (BOS + 200)")

    # Score the reference logits along the expected ids, so a divergence above cannot hide
    # a logits comparison.
    logits = ref.logits(expected[:200])
    diff = np.abs(logits - ref_logits)
    pos, col = np.unravel_index(np.argmax(diff), diff.shape)
    print(f"max |logit diff| vs run.c over 200x512: {diff.max():.3g} "
          f"(position {pos}, vocab {col}), mean {diff.mean():.3g}, "
          f"logits std {ref_logits.std():.3g}")
    if diff.max() > TOLERANCE:
        print(f"FAIL: max diff above {TOLERANCE}")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
