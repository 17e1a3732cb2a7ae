#!/usr/bin/python3
"""The C ABI from Node.js (examples/node/answer.mjs, koffi from npm): the example's output and,
through tests/capi_node_check.mjs, tokens and logits equal to the C++ API's.

    capi_node_test.py --lib LIB --model DIR --fixtures DIR --reference DIR

koffi is installed into examples/node/node_modules when missing (npm install). Without node or
npm's registry the test is skipped (exit 77) with the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]
NODE_DIR = SOURCE / "examples" / "node"
SKIP = 77


def skip(reason: str) -> int:
    if os.environ.get("CI") == "true":
        print(f"FAIL: {reason} (CI=true: the Node test must run in CI)")
        return 1
    print(f"SKIP: {reason}")
    return SKIP


def run_example(node: str, args: list[str], expect: Path | None) -> bool:
    cmd = [node, str(NODE_DIR / "answer.mjs"), *args]
    print("running:", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, timeout=300)
    sys.stdout.write(p.stderr.decode("utf-8", "replace"))
    if p.returncode != 0:
        print(f"FAIL: exit code {p.returncode}")
        return False
    if expect is None:
        print(f"OK: ran ({len(p.stdout)} bytes of output)")
        return True
    if p.stdout != expect.read_bytes():
        print(f"FAIL: stdout {p.stdout!r} differs from {expect}")
        return False
    print(f"OK: stdout equals {expect}")
    return True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--fixtures", required=True, help="holds adapter/ (capi_fixture.py)")
    ap.add_argument("--reference", required=True)
    a = ap.parse_args()

    node = shutil.which("node")
    if not node:
        return skip("node is not installed (Debian: nodejs)")
    if not (NODE_DIR / "node_modules" / "koffi").is_dir():
        npm = shutil.which("npm")
        if not npm:
            return skip("npm is not installed, so koffi cannot be installed")
        print(f"installing koffi into {NODE_DIR / 'node_modules'} (npm install)", flush=True)
        try:
            p = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock"],
                               cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return skip("npm install timed out (is the npm registry reachable?)")
        if p.returncode != 0 or not (NODE_DIR / "node_modules" / "koffi").is_dir():
            print(p.stdout + p.stderr)
            return skip("npm install of koffi failed (is the npm registry reachable?)")

    ref = Path(a.reference)
    common = ["--lib", a.lib, "-m", a.model, "-n", "32", "-t", "2"]
    ok = run_example(node, common, ref / "base.text")
    ok &= run_example(node, common + ["--lora", f"{a.fixtures}/adapter", "--lora-scale", "0.75"],
                      ref / "adapter.text")
    ok &= run_example(node, common + ["--temp", "0.9", "--seed", "42"], None)
    cmd = [node, str(SOURCE / "tests" / "capi_node_check.mjs"), a.lib, a.model, a.fixtures,
           str(ref)]
    print("running:", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    sys.stdout.write(p.stdout + p.stderr)
    ok &= p.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
