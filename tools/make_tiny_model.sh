#!/bin/sh
# Writes the default model that the quick start answers with: a SentencePiece tokenizer trained
# with spm_train on this project's own documentation, and random LLaMA weights in Hugging Face
# layout. Its answers are noise: it exists so that everything runs on a fresh machine without
# downloading weights.
#
#   tools/make_tiny_model.sh OUT_DIR [PYTHON]
set -eu
out=$1
python=${2:-/usr/bin/python3}
here=$(cd "$(dirname "$0")/.." && pwd)
work="$out.tmp"
rm -rf "$work"
mkdir -p "$work"

# One sentence per line, from our own prose.
cat "$here/README.md" "$here"/docs/*.md | tr -s ' ' > "$work/corpus.txt"

spm_train --input="$work/corpus.txt" --model_prefix="$work/tokenizer" --vocab_size=600 \
  --model_type=bpe --byte_fallback=true --character_coverage=1.0 --split_digits=true \
  --remove_extra_whitespaces=false --num_threads=1 --hard_vocab_limit=false \
  --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --minloglevel=2 >"$work/spm_train.log" 2>&1 || {
  cat "$work/spm_train.log" >&2
  exit 1
}

vocab=$("$python" -c "import sentencepiece as s, sys; print(s.SentencePieceProcessor(model_file=sys.argv[1]).get_piece_size())" "$work/tokenizer.model")
"$python" "$here/tools/make_llama_fixture.py" "$work/model" --hidden 128 --layers 4 --heads 8 \
  --kv-heads 4 --ffn 344 --vocab "$vocab" --max-pos 1024 --seed 20230405 \
  --tokenizer "$work/tokenizer.model"
rm -rf "$out"
mv "$work/model" "$out"
rm -rf "$work"
echo "wrote $out (vocab $vocab)"
