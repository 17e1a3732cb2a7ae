"""The shared data folder (../shared/data beside the repository) as the Python tests see it."""

from __future__ import annotations

import os
from pathlib import Path


def missing(path: Path) -> int | None:
    """None when path exists; otherwise prints why and returns the exit status: 0 (SKIP) in a
    fresh clone, 1 (FAIL) under CI=true, where the shared data must be there (as in the C++
    tests)."""
    if path.exists():
        return None
    if os.environ.get("CI") == "true":
        print(f"FAIL: {path} not found but CI=true")
        return 1
    print(f"SKIP: {path} not found (a fresh clone has no shared data)")
    return 0
