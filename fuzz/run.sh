#!/usr/bin/env bash
# Runs every libFuzzer target for a while (fuzz/README.md). CI: .ci/run.
#
#   bash fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]
#
# Each target starts from a scratch copy of its seed corpus (fuzz/corpus/<t>,
# left untouched) plus fuzz/regressions/<t> when there is one, with its
# dictionary fuzz/dict/<t>.dict. Exits non-zero as soon as a target finds a
# crash, a leak, a timeout or an out-of-memory; the reproducer is left in
# $VARVE_FUZZ_ARTIFACTS (default: a temporary directory, printed).
# Per-target logs (with libFuzzer's final stats) go to the same directory.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]}
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
targets=("$@")
((${#targets[@]})) || targets=(record_decode log_open heads_file ndjson log_mutation segment_index columnar_decode group_file upcaster_file chain_file start_file archive_file keys_file streams_file)
artifacts=${VARVE_FUZZ_ARTIFACTS:-$(mktemp -d "${TMPDIR:-/tmp}/varve-fuzz-XXXXXX")}
mkdir -p "$artifacts"
echo "fuzz: ${#targets[@]} targets, ${seconds} s each; artifacts and logs in $artifacts"
for t in "${targets[@]}"; do
  bin="$build/fuzz/${t}_fuzzer"
  [[ -x $bin ]] || { echo "fuzz: $bin is missing (build the varve-fuzzers target)" >&2; exit 2; }
  corpus=$(mktemp -d "${TMPDIR:-/tmp}/varve-corpus-$t-XXXXXX")
  cp -R "fuzz/corpus/$t/." "$corpus/"
  dirs=("$corpus")
  [[ -d fuzz/regressions/$t ]] && dirs+=("fuzz/regressions/$t")
  dict=()  # a target without a dictionary runs without one
  [[ -f fuzz/dict/$t.dict ]] && dict=(-dict="fuzz/dict/$t.dict")
  echo "== fuzz $t (${seconds} s)"
  rc=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_total_time="$seconds" "${dict[@]}" -print_final_stats=1 \
           -artifact_prefix="$artifacts/$t-" "${dirs[@]}" >"$artifacts/$t.log" 2>&1 || rc=$?
  grep -aE '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)' \
    "$artifacts/$t.log" || true
  rm -rf "$corpus"
  if ((rc != 0)); then
    tail -n 60 "$artifacts/$t.log" >&2
    echo "fuzz: $t FAILED (exit $rc); reproducer and log in $artifacts" >&2
    exit 1
  fi
done
echo "fuzz: all targets ran clean"
