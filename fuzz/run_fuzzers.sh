#!/bin/bash
# Runs each fuzz target for a given time, one after another, at the lowest CPU priority, and
# prints what each did: seconds, executions, corpus size, and any crash, leak or timeout found.
#
#   fuzz/run_fuzzers.sh [-t SECONDS] [-b BUILD_DIR] [TARGET...]
#
#   -t SECONDS   time per target (default 600)
#   -b DIR       the fuzz build (default build-fuzz: cmake --preset fuzz && cmake --build
#                --preset fuzz)
#   STACKLLAMA_FUZZ_FLAGS  extra libFuzzer flags, e.g. "-fork=1 -ignore_crashes=1 -ignore_ooms=1"
#                to go on past findings (a fork-mode run counts executions in its status lines)
#   TARGET       safetensors, safetensors_index, torch_bin, model_config, adapter_config,
#                tokenizer_config, native_file, kv_session (default: every fuzz_* the build has)
#
# The corpus of each target grows in BUILD_DIR/fuzz/corpus/<target> (seeds from
# fuzz/make_seeds.py, written first if missing, and fuzz/regressions/<target> are read too);
# findings go to BUILD_DIR/fuzz/artifacts/<target>/ and logs to BUILD_DIR/fuzz/logs/. Exits 1 when
# any target found something. Minimise a finding with `fuzz_<target> -minimize_crash=1 FILE` and
# commit the small result under fuzz/regressions/<target>/ with the fix.
set -uo pipefail

seconds=600
build=build-fuzz
while getopts "t:b:h" opt; do
    case $opt in
        t) seconds=$OPTARG ;;
        b) build=$OPTARG ;;
        *) sed -n '2,20p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))

src=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$src")
cd "$root"
bin=$build/fuzz
if [ ! -d "$bin" ]; then
    echo "no $bin: build the fuzz targets first (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
    exit 2
fi
bin=$(cd "$bin" && pwd)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$bin"/fuzz_*; do
        [ -x "$f" ] && targets+=("${f##*/fuzz_}")
    done
fi

if [ ! -d "$bin/seeds" ]; then
    python=$(sed -n 's/^STACKLLAMA_PYTHON:FILEPATH=//p' "$build/CMakeCache.txt" 2>/dev/null)
    "${python:-/usr/bin/python3}" "$src/make_seeds.py" --out "$bin/seeds" \
        --shared-data "$root/../shared/data" --fixtures "$root/build/tests/fixtures" || exit 2
fi

dict_for() {
    case $1 in
        safetensors) echo safetensors.dict ;;
        torch_bin) echo torch_bin.dict ;;
        *) echo json.dict ;;
    esac
}
max_len_for() {
    case $1 in
        safetensors | torch_bin | native_file | kv_session) echo 65536 ;;
        *) echo 16384 ;;
    esac
}

mkdir -p "$bin/logs"
status=0
summary=()
for t in "${targets[@]}"; do
    exe=$bin/fuzz_$t
    [ -x "$exe" ] || { echo "no target $exe" >&2; status=1; continue; }
    corpus=$bin/corpus/$t
    artifacts=$bin/artifacts/$t
    mkdir -p "$corpus" "$artifacts" "$bin/seeds/$t"
    dirs=("$corpus" "$bin/seeds/$t")
    [ -d "$src/regressions/$t" ] && dirs+=("$src/regressions/$t")
    log=$bin/logs/$t.log
    echo "== fuzz_$t for ${seconds}s (log: $log)"
    start=$(date +%s)
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        nice -n 19 "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 \
        -max_len="$(max_len_for "$t")" -dict="$src/dicts/$(dict_for "$t")" \
        -print_final_stats=1 -artifact_prefix="$artifacts/" ${STACKLLAMA_FUZZ_FLAGS:-} \
        "${dirs[@]}" >"$log" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    verdict=ok
    if [ $rc -ne 0 ]; then
        verdict="FOUND (exit $rc): $(grep -m1 -E 'ERROR|invariant broken|SUMMARY' "$log")"
        status=1
    fi
    line=$(printf '%-18s %6ss %12s execs  corpus %5s files %9s bytes  %s' \
        "$t" "$elapsed" "${execs:-?}" "$files" "$bytes" "$verdict")
    echo "$line"
    summary+=("$line")
done

echo
echo "target               time        execs  corpus"
printf '%s\n' "${summary[@]}"
exit $status
