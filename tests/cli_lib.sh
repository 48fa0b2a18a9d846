# The harness the CLI's end-to-end tests share (tests/cli_*.sh): a scratch
# directory, run/expect helpers and a JSON checker. Sourced, not run:
#   VARVE=path/to/varve; source tests/cli_lib.sh
command -v python3 >/dev/null || { echo "$0: python3 is required"; exit 1; }
TMP=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null; rm -rf "$TMP"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
not_ok() {
  failed=$((failed + 1))
  echo "FAIL - $1"
  echo "       rc=$rc; stderr: $(head -c 600 "$TMP/err")"
}
# expect DESCRIPTION CONDITION...: passes when the condition (a command) succeeds.
expect() {
  local desc=$1
  shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
# run ARGS...: runs varve with stdin from $TMP/in; sets rc, $TMP/out, $TMP/err.
run() {
  "$VARVE" "$@" <"$TMP/in" >"$TMP/out" 2>"$TMP/err"
  rc=$?
}
input() { cat >"$TMP/in"; }
rc_is() { [ "$rc" -eq "$1" ]; }
rc_nonzero() { [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ]; }  # failed, but did not crash
err_has() { grep -q -- "$1" "$TMP/err"; }
out_has() { grep -q -- "$1" "$TMP/out"; }
# One clear line, prefixed, as every error should be.
err_clear() { [ "$(wc -l <"$TMP/err")" -ge 1 ] && head -1 "$TMP/err" | grep -q '^varve: '; }
out_lines() { [ "$(grep -c . "$TMP/out")" -eq "$1" ]; }
# py SCRIPT: runs python with the last stdout as `out` (list of parsed lines).
py() {
  python3 - "$TMP/out" "$TMP/expected" "$1" <<'EOF'
import json, sys
out = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
try:
    expected = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
except FileNotFoundError:
    expected = []
sys.exit(0 if eval(sys.argv[3]) else 1)
EOF
}

# flip_byte FILE OFFSET: damages one byte for certain (XOR 0xFF). Writing a
# fixed byte instead leaves the file as it was whenever it already held that
# byte (compressed or timestamped bytes differ from run to run).
flip_byte() {
  python3 - "$1" "$2" <<'EOF'
import sys
off = int(sys.argv[2])
with open(sys.argv[1], "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0xFF]))
EOF
}

# usage_case DESCRIPTION ARGS...: exit 2, a clear first line, no crash.
usage_case() {
  local desc=$1
  shift
  run "$@"
  expect "$desc is a usage error (exit 2)" rc_is 2
  expect "  ... with a clear error" err_clear
}
# summary: the last line, and the exit status of the script.
summary() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
