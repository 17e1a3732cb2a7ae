#!/usr/bin/python3
"""Answer a question with a LLaMA model through the stackllama Python module, streaming the answer.

    answer.py -m MODEL [-p QUESTION] [-n N] [-t THREADS] [--raw] [--lora DIR [--lora-scale S]]
              [--temp T [--top-k K] [--top-p P] [--seed N]]

MODEL is a Hugging Face directory or a native stackllama file. Only the answer goes to stdout.
"""

from __future__ import annotations

import argparse
import sys

import stackllama


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-p", "--prompt", default="How do I sort a dict?")
    ap.add_argument("-n", "--n-predict", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("--raw", action="store_true", help="no Question/Answer template")
    ap.add_argument("--lora", help="a PEFT LoRA adapter directory")
    ap.add_argument("--lora-scale", type=float, default=1.0)
    ap.add_argument("--temp", type=float, default=0.0, help="0 = greedy; > 0 samples")
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()

    try:
        model = stackllama.Model(a.model, n_threads=a.threads)
        gen = stackllama.Generator(model)
        if a.lora:
            gen.attach(stackllama.Adapter(model, a.lora), scale=a.lora_scale)
        stream = gen.stream(a.prompt, raw=a.raw, max_new_tokens=a.n_predict,
                            do_sample=a.temp > 0, temperature=a.temp or 1.0, top_k=a.top_k,
                            top_p=a.top_p, seed=a.seed)
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
    except stackllama.Error as e:
        print(f"answer.py: {e}", file=sys.stderr)
        return 1
    result = stream.result
    print(f"\nanswer.py: {len(result.tokens)} tokens, finished by {result.finish_reason}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
