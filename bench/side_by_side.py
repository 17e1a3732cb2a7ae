#!/usr/bin/python3
"""stackllama-bench beside llama.cpp's llama-bench on one machine, alternated, as one table.

    bench/side_by_side.py --llama-bench /opt/llama.cpp/build/bin/llama-bench --gguf-dir /tmp \\
        --shape 1b --types q4,q8 -p 128 -n 64 -r 3 -t 2 --rounds 2

Each round runs stackllama-bench on every type, then llama-bench on each type's GGUF file: the
prompt (-p P -n 0) and decode after a prompt of P tokens (-p 0 -n N -d P, which is how
stackllama-bench times decode). Rounds alternate the two programs, so a drift of the machine's
memory bandwidth (tens of percent here, over minutes) shows up in both; compare within a round.
Per row: prefill and decode tokens/s of both and their ratios, stackllama's decode as a share of
the read bandwidth it measured in the same run, and its peak memory over weights + KV cache.

--gguf-dir holds r<shape>-q4_0.gguf / r<shape>-q8_0.gguf, random weights of the same shape:

    tools/random_gguf.py --shape 1b -o /tmp/r1b-f16.gguf
    llama-quantize /tmp/r1b-f16.gguf /tmp/r1b-q4_0.gguf q4_0     # and q8_0

Exit status: 0 done, 1 a benchmark failed, 2 bad arguments or missing files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GGML_NAME = {"q4": "q4_0", "q8": "q8_0", "f16": "f16"}
# The goals (issue 5), for the quantized types: prefill at least twice llama.cpp's, decode
# at 85 % of the read bandwidth measured in the same run.
PREFILL_RATIO_GOAL, DECODE_BW_GOAL = 2.0, 85.0
QUANTIZED = ("q4", "q8")


def run_json(cmd: list[str]) -> list[dict]:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout)


def round_rows(a, types: list[str], gguf: dict[str, Path]) -> list[dict]:
    common = ["-p", str(a.p), "-r", str(a.r), "-t", str(a.t)]
    ours = run_json([str(a.stackllama_bench), "--shape", a.shape, "--type", ",".join(types),
                     "-n", str(a.n), "-o", "json"] + common)
    rows = []
    for t, s in zip(types, ours):
        pp = run_json([str(a.llama_bench), "-m", str(gguf[t]), "-n", "0", "-o", "json"] + common)
        tg = run_json([str(a.llama_bench), "-m", str(gguf[t]), "-p", "0", "-n", str(a.n),
                       "-d", str(a.p), "-r", str(a.r), "-t", str(a.t), "-o", "json"])
        rows.append({
            "type": t,
            "stackllama_pp": s["prefill"]["avg_ts"], "llama_pp": pp[0]["avg_ts"],
            "stackllama_tg": s["decode"]["avg_ts"], "llama_tg": tg[0]["avg_ts"],
            "pct_of_read_bw": s["decode"]["pct_of_read_bw"],
            "read_bw_gbs": s["read_bw_gbs"]["mean"],
            "peak_over_weights_kv": s["memory"]["peak_over_weights_kv"],
            "isa": s["isa"],
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-bench", type=Path, required=True)
    ap.add_argument("--stackllama-bench", type=Path,
                    default=ROOT / "build" / "bench" / "stackllama-bench")
    ap.add_argument("--gguf-dir", type=Path, required=True)
    ap.add_argument("--shape", choices=("1b", "7b"), default="1b")
    ap.add_argument("--types", default="q4,q8", help="comma-separated: q4, q8, f16")
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("-o", choices=("md", "json"), default="md")
    a = ap.parse_args(argv)
    types = a.types.split(",")
    if any(t not in GGML_NAME for t in types) or a.rounds < 1 or min(a.p, a.n, a.r, a.t) < 1:
        print(f"side_by_side: types must be among {', '.join(GGML_NAME)}; -p, -n, -r, -t and "
              "--rounds at least 1", file=sys.stderr)
        return 2
    gguf = {t: a.gguf_dir / f"r{a.shape}-{GGML_NAME[t]}.gguf" for t in types}
    missing = [str(p) for p in [a.llama_bench, a.stackllama_bench, *gguf.values()] if not p.is_file()]
    if missing:
        print("side_by_side: not found: " + ", ".join(missing) + " (see --help for making the "
              "GGUF files)", file=sys.stderr)
        return 2
    rows = []
    try:
        for r in range(a.rounds):
            rows += [dict(row, round=r + 1) for row in round_rows(a, types, gguf)]
    except (RuntimeError, ValueError, KeyError, IndexError) as e:
        print(f"side_by_side: {e}", file=sys.stderr)
        return 1
    if a.o == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{a.shape}, -p {a.p} -n {a.n} -r {a.r} -t {a.t}, stackllama ISA {rows[0]['isa']}\n")
    print("| round | type | stackllama pp | llama.cpp pp | ratio | stackllama tg (% of read BW) "
          "| llama.cpp tg @ d | ratio | peak mem / (weights + KV) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for w in rows:
        pr, tr = w["stackllama_pp"] / w["llama_pp"], w["stackllama_tg"] / w["llama_tg"]
        goals = w["type"] in QUANTIZED  # the goals are set for the quantized types
        print(f"| {w['round']} | {w['type']} | {w['stackllama_pp']:.2f} | {w['llama_pp']:.2f} | "
              f"{pr:.2f}{' (< 2)' if goals and pr < PREFILL_RATIO_GOAL else ''} | "
              f"{w['stackllama_tg']:.2f} ({w['pct_of_read_bw']:.0f} % of {w['read_bw_gbs']:.1f} GB/s"
              f"{', < 85 %' if goals and w['pct_of_read_bw'] < DECODE_BW_GOAL else ''}) | "
              f"{w['llama_tg']:.2f} | {tr:.2f} | {w['peak_over_weights_kv']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
