#!/usr/bin/python3
"""Runs an example program and compares its stdout, byte for byte, with a file.

    capi_run_example.py --expect FILE [--env NAME=VALUE ...] -- COMMAND ARGS...

The examples stream their answer to stdout (diagnostics go to stderr), so with the reference
settings stdout must equal the text the C++ API generated (tests/capi_reference.cpp).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--expect", required=True)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    print("running:", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, env=env, timeout=600)
    sys.stdout.write(p.stderr.decode("utf-8", "replace"))
    if p.returncode != 0:
        print(f"FAIL: exit code {p.returncode}")
        return 1
    expected = open(a.expect, "rb").read()
    if p.stdout != expected:
        print(f"FAIL: stdout differs from {a.expect}")
        print(f"  got      {p.stdout!r}")
        print(f"  expected {expected!r}")
        return 1
    print(f"OK: stdout equals {a.expect} ({len(expected)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
