#!/usr/bin/python3
"""Writes SentencePiece reference outputs for tests/tokenizer_test.cpp.

For each tokenizer found under --shared-data, and each string of corpus.json (beside this
script), records what Debian's python3-sentencepiece does: the ids of sp.encode(text),
sp.decode(ids), and whether decode(encode(text)) == text. Also records the add_bos_token /
add_eos_token of the folder's tokenizer_config.json, so the C++ test can check the special ids.

Output: <out>/status.json, plus <out>/<name>.json per tokenizer. When the shared data folder is
absent, status.json says so and the script exits 0 (the C++ test then skips).
"""
import argparse
import json
import os
import sys

# (output name, folder under the shared data dir)
TOKENIZERS = [
    ("llama-tokenizer", "llama-tokenizer"),
    ("stories260K-hf", "stories260K-hf"),
]


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=True, indent=1)
        f.write("\n")
    os.replace(tmp, path)  # a half-written file never looks complete to the C++ test


def read_config(folder):
    path = os.path.join(folder, "tokenizer_config.json")
    if not os.path.exists(path):
        return {"add_bos_token": True, "add_eos_token": False, "present": False}
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    return {
        "add_bos_token": bool(cfg.get("add_bos_token", True)),
        "add_eos_token": bool(cfg.get("add_eos_token", False)),
        "present": True,
    }


def reference(spm, model_path, corpus):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    cases = []
    for text in corpus:
        ids = sp.encode(text)
        decoded = sp.decode(ids)
        cases.append({
            "text": text,
            "ids": ids,
            "pieces": [sp.id_to_piece(i) for i in ids],
            "decoded": decoded,
            "roundtrip": decoded == text,
        })
    return {
        "model": model_path,
        "sentencepiece_version": getattr(spm, "__version__", "unknown"),
        "n_vocab": sp.get_piece_size(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        "pad_id": sp.pad_id(),
        "cases": cases,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared-data", required=True, help="the ../shared/data folder")
    ap.add_argument("--out", required=True, help="where to write the reference JSON files")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)

    if not os.path.isdir(args.shared_data):
        write_json(os.path.join(args.out, "status.json"), {
            "available": False,
            "reason": "shared data folder not found at %s" % args.shared_data,
        })
        print("SKIP: no shared data at %s; wrote status.json only" % args.shared_data)
        return 0

    try:
        import sentencepiece as spm  # only needed when there is something to compare against
    except ImportError as e:
        # Shared data without the reference library is a broken setup, not a reason to skip.
        print("error: %s needs python3-sentencepiece (%s); run it with /usr/bin/python3"
              % (sys.executable, e), file=sys.stderr)
        return 1

    written = []
    for name, sub in TOKENIZERS:
        folder = os.path.join(args.shared_data, sub)
        model_path = os.path.join(folder, "tokenizer.model")
        if not os.path.exists(model_path):
            print("note: %s not found, skipping it" % model_path)
            continue
        ref = reference(spm, model_path, corpus)
        ref["name"] = name
        ref["config"] = read_config(folder)
        write_json(os.path.join(args.out, name + ".json"), ref)
        n_rt = sum(c["roundtrip"] for c in ref["cases"])
        print("%s: %d strings, %d round-trip" % (name, len(corpus), n_rt))
        written.append(name)

    write_json(os.path.join(args.out, "status.json"), {
        "available": True,
        "corpus_size": len(corpus),
        "tokenizers": written,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
