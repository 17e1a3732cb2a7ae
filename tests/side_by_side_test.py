#!/usr/bin/python3
"""bench/side_by_side.py: with stand-ins for stackllama-bench and llama-bench that print fixed JSON,
the table alternates them per round, divides the right figures and marks the missed goals; bad
arguments and missing programs are refused with exit 2, a failing benchmark is exit 1.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import side_by_side  # noqa: E402

OURS = [{"type": t, "isa": "avx2", "prefill": {"avg_ts": pp},
         "decode": {"avg_ts": tg, "pct_of_read_bw": pct},
         "read_bw_gbs": {"mean": 40.0}, "memory": {"peak_over_weights_kv": 1.02}}
        for t, pp, tg, pct in (("q4", 150.0, 50.0, 90.0), ("q8", 90.0, 25.0, 70.0))]
# llama-bench: prefill 60 (q4_0) / 50 (q8_0) / 100 (f16); decode 20 / 10 / 5.
THEIRS = {"q4_0": (60.0, 20.0), "q8_0": (50.0, 10.0), "f16": (100.0, 5.0)}


def stand_ins(d: Path, fail: bool = False) -> tuple[Path, Path]:
    log = d / "calls.log"
    ours, theirs = d / "stackllama-bench", d / "llama-bench"
    ours.write_text(f"#!/bin/sh\necho stackllama \"$@\" >> {log}\n"
                    f"{'exit 3' if fail else ''}\ncat <<'X'\n{json.dumps(OURS)}\nX\n")
    lines = ["#!/bin/sh", f'echo llama "$@" >> {log}', 'case "$*" in']
    for g, (pp, tg) in THEIRS.items():
        lines.append(f'  *{g}*"-p 0"*) echo \'[{{"avg_ts": {tg}}}]\' ;;')
        lines.append(f'  *{g}*) echo \'[{{"avg_ts": {pp}}}]\' ;;')
    lines.append("esac")
    theirs.write_text("\n".join(lines) + "\n")
    for p in (ours, theirs):
        p.chmod(0o755)
    for g in THEIRS:
        (d / f"r1b-{g}.gguf").write_bytes(b"")
    return ours, theirs


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = side_by_side.main(args)
    return rc, out.getvalue(), err.getvalue()


def main() -> int:
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ours, theirs = stand_ins(d)
        base = ["--llama-bench", str(theirs), "--stackllama-bench", str(ours), "--gguf-dir", str(d)]
        rc, out, err = run(base + ["--rounds", "2", "-p", "16", "-n", "8"])
        rows = [line for line in out.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
        if rc != 0 or len(rows) != 4:
            errors.append(f"two rounds of q4,q8: exit {rc}, {len(rows)} rows\n{out}{err}")
        else:
            q4, q8 = rows[0], rows[1]
            for want in ("150.00 | 60.00 | 2.50 |", "50.00 (90 % of 40.0 GB/s) | 20.00 | 2.50 | 1.02"):
                if want not in q4:
                    errors.append(f"q4 row lacks {want!r}: {q4}")
            for want in ("90.00 | 50.00 | 1.80 (< 2) |", "25.00 (70 % of 40.0 GB/s, < 85 %) | 10.00 | 2.50"):
                if want not in q8:
                    errors.append(f"q8 row lacks {want!r}: {q8}")
        calls = (d / "calls.log").read_text().split("\n")
        order = [c.split()[0] for c in calls if c]
        want_order = ["stackllama", "llama", "llama", "llama", "llama"] * 2
        if order != want_order:
            errors.append(f"call order {order}, want {want_order}")
        if not any("-d 16" in c and "-p 0" in c and "-n 8" in c for c in calls):
            errors.append("llama-bench's decode is not timed after a prompt of -p tokens (-d)")

        # The goals are the quantized types': an f16 row below them is not marked.
        rc, out, err = run(base + ["--types", "q8,f16"])
        f16 = [line for line in out.splitlines() if line.startswith("| 1 | f16 |")]
        if rc != 0 or len(f16) != 1 or "<" in f16[0] or "0.90 |" not in f16[0]:
            errors.append(f"an f16 row: exit {rc}, {out}{err}")

        rc, out, err = run(base + ["-o", "json", "--types", "q4"])
        got = json.loads(out) if rc == 0 else []
        if len(got) != 2 or got[0]["stackllama_pp"] != 150.0 or got[0]["llama_tg"] != 20.0:
            errors.append(f"json output: exit {rc}, {out}{err}")

        for args, needle in ((["--types", "q3"], "types must be"), (["--rounds", "0"], "at least 1"),
                             (["--shape", "7b"], "r7b-q4_0.gguf")):
            rc, out, err = run(base + args)
            if rc != 2 or needle not in err:
                errors.append(f"{args}: exit {rc}, message {err!r}")
        bad = d / "failing"
        bad.mkdir()
        ours_failing, _ = stand_ins(bad, fail=True)
        rc, out, err = run(["--llama-bench", str(theirs), "--stackllama-bench", str(ours_failing),
                            "--gguf-dir", str(bad)])
        if rc != 1 or "exited 3" not in err:
            errors.append(f"a failing stackllama-bench: exit {rc}, message {err!r}")
    for e in errors:
        print("FAIL:", e)
    if not errors:
        print("OK: side_by_side.py alternates the programs, divides the right figures and refuses bad input")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
