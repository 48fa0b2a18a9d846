#!/usr/bin/env bash
# End-to-end checks of the varve command line tool, run against a scratch log.
#   bash tests/cli_test.sh path/to/varve      (needs python3 to compare JSON)
set -u

VARVE=${1:?usage: cli_test.sh path/to/varve}
command -v python3 >/dev/null || { echo "cli_test.sh: python3 is required"; exit 1; }
TMP=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null; rm -rf "$TMP"' EXIT
D=$TMP/log
SEG=$D/00000000000000000000.seg

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

# --- create ------------------------------------------------------------------
input </dev/null
run create "$D" --segment-size 1M
expect "create succeeds" rc_is 0
run create "$D"
expect "create refuses a directory that already holds a log" rc_nonzero
expect "  ... with a clear error" err_clear

# --- append and read back -----------------------------------------------------
input <<'EOF'
{"stream":"order-1","type":"OrderPlaced","expected_version":"no_stream","data":{"total":12.5,"items":["a","b"],"note":"h\u00e9llo \"q\"","nested":{"x":[1,{"y":null}]}}}
{"stream":"order-1","type":"OrderPaid","expected_version":1,"data":42,"event_id":"0123abcd-0000-1111-2222-333344445555","schema_version":3}

{"stream":"order-2","expected_version":"no_stream","events":[{"type":"OrderPlaced","data":{"total":1}},{"type":"OrderShipped","data":"sent","correlation_id":"AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"}]}
{"stream":42,"type":"Blob","data_base64":"AAECA/8=","timestamp":1700000000000000000}
EOF
cp "$TMP/in" "$TMP/expected"
run append "$D"
expect "append succeeds" rc_is 0
expect "append prints one ack per line (a batch is one line)" out_lines 4
expect "acks carry stream and versions" py 'out[0] == {"stream": "order-1", "first_version": 1, "last_version": 1, "position": out[0]["position"]} and out[1]["first_version"] == 2'
expect "a batch ack spans its versions" py 'out[2]["stream"] == "order-2" and out[2]["first_version"] == 1 and out[2]["last_version"] == 2'
expect "an integer stream acks as a number" py 'out[3]["stream"] == 42'
expect "positions increase" py 'out[0]["position"] < out[1]["position"] < out[2]["position"] < out[3]["position"]'

run read "$D"
expect "read succeeds" rc_is 0
expect "read returns every event" out_lines 5
expect "JSON data comes back identical" py '[e.get("data") for e in out[:4]] == [expected[0]["data"], expected[1]["data"], expected[2]["events"][0]["data"], expected[2]["events"][1]["data"]]'
expect "type names come from the registry" py '[e["type"] for e in out] == ["OrderPlaced", "OrderPaid", "OrderPlaced", "OrderShipped", "Blob"]'
expect "streams, versions and sequences" py '[(e["stream"], e["version"], e["sequence"]) for e in out] == [("order-1", 1, 0), ("order-1", 2, 1), ("order-2", 1, 2), ("order-2", 2, 3), (42, 1, 4)]'
expect "binary payload comes back as data_base64" py 'out[4]["data_base64"] == "AAECA/8=" and "data" not in out[4]'
expect "ids, schema version and timestamp round-trip" py 'out[1]["event_id"] == "0123abcd-0000-1111-2222-333344445555" and out[1]["schema_version"] == 3 and out[3]["correlation_id"] == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" and out[4]["timestamp"] == 1700000000000000000 and "event_id" not in out[0]'
second=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[1])["position"])' "$TMP/out")

run read "$D" --limit 2
expect "read --limit 2 prints two events" out_lines 2
run read "$D" --from-position "$second"
expect "read --from-position starts there" py 'len(out) == 4 and out[0]["position"] == '"$second"
run read "$D" --limit abc
expect "a malformed --limit is a usage error (exit 2)" rc_is 2
expect "  ... naming the flag" err_has '--limit'
run read "$D" --from-position -5
expect "a negative --from-position is a usage error" rc_is 2

# --- malformed input stops the append at that line ---------------------------
input <<'EOF'
{"stream":"order-3","type":"OrderPlaced","data":{}}
{"stream":"order-4","data":{}}
{"stream":"order-5","type":"OrderPlaced","data":{}}
EOF
run append "$D"
expect "a malformed line fails the append" rc_is 1
expect "  ... naming the line and the problem" err_has 'line 2: missing "type"'
expect "  ... after acking the lines before it" out_lines 1
run read "$D"
expect "  ... with the earlier line appended and nothing after it" py '[e["stream"] for e in out][-1] == "order-3" and not any(e["stream"] in ("order-4", "order-5") for e in out)'

printf '%s\n' '{"stream":"order-6","type":"T","data":1}' '{"stream":"order-6","type":"T","data":1}' '{"stream": oops}' >"$TMP/in"
run append "$D"
expect "invalid JSON names its line" err_has 'line 3: not valid JSON'
printf '%s\n' '{"stream":"order-7","type":"T","data":1,"event_id":"not-a-uuid"}' >"$TMP/in"
run append "$D"
expect "a non-UUID id is rejected clearly" err_has 'line 1: "event_id" must be a UUID'

# --- optimistic concurrency ----------------------------------------------------
input <<'EOF'
{"stream":"order-1","type":"OrderCancelled","expected_version":5,"data":{}}
{"stream":"order-8","type":"OrderPlaced","data":{}}
EOF
run append "$D"
expect "a wrong expected_version fails by default" rc_is 1
expect "  ... naming stream, expected and actual versions" err_has 'stream "order-1": expected 5, actual 2'
expect "  ... and appends nothing after it" out_lines 0
run append "$D" --on-conflict skip
expect "--on-conflict skip carries on and exits 0" rc_is 0
expect "  ... acking the next line" py 'len(out) == 1 and out[0]["stream"] == "order-8"'
run append "$D" --on-conflict maybe
expect "an unknown --on-conflict value is a usage error" rc_is 2

# --- durability modes ----------------------------------------------------------
printf '%s\n' '{"stream":"order-9","type":"T","data":1}' '{"stream":"order-9","type":"T","data":2}' >"$TMP/in"
run append "$D" --durability sync
expect "append --durability sync acks" out_lines 2
run append "$D" --durability group
expect "append --durability group acks" out_lines 2

# --- a second writer is refused; acks come while the input is still open -------
mkfifo "$TMP/fifo"
input </dev/null
"$VARVE" append "$D" <"$TMP/fifo" >"$TMP/live" 2>"$TMP/live_err" &
writer=$!
exec 3>"$TMP/fifo"
echo '{"stream":"live","type":"T","data":1}' >&3
for _ in $(seq 50); do [ -s "$TMP/live" ] && break; sleep 0.1; done
expect "an ack arrives before the input ends" test -s "$TMP/live"
run append "$D"
expect "a second writer is refused" rc_nonzero
expect "  ... with a clear error" err_clear
exec 3>&-
wait "$writer"
rc=$?
expect "the first writer exits 0 at end of input" rc_is 0

# --- stat and verify ------------------------------------------------------------
run stat "$D" --json
expect "stat --json succeeds" rc_is 0
expect "stat --json parses and counts the events" py 'len(out) == 1 and out[0]["events"] >= 12 and out[0]["segments"] >= 1 and out[0]["bytes_on_disk"] > 0'
run stat "$D"
expect "stat prints text" rc_is 0
run verify "$D"
expect "verify passes an intact log" rc_is 0
run verify "$D" --json
expect "verify --json says intact" py 'out[0]["intact"] is True and out[0]["events"] >= 12'

# Flip one byte inside the first record.
off=$((64 + 20))
byte=$(od -An -tu1 -j "$off" -N1 "$SEG" | tr -d ' ')
printf "\\$(printf %o $((byte ^ 0xff)))" | dd of="$SEG" bs=1 seek="$off" conv=notrunc status=none
run verify "$D"
expect "verify fails a corrupted log with exit 2" rc_is 2
expect "  ... naming the segment file" err_has '00000000000000000000.seg'
run verify "$D" --json
expect "verify --json reports the problem" py 'out[0]["intact"] is False and "problem" in out[0]'
run read "$D"
expect "read of a corrupted record fails without crashing" rc_nonzero
expect "  ... with a clear error" err_clear

# --- what is not a log -------------------------------------------------------------
mkdir -p "$TMP/notalog"
echo hello >"$TMP/notalog/readme.txt"
for cmd in read stat verify append; do
  run $cmd "$TMP/missing"
  expect "$cmd on a missing directory fails" rc_nonzero
  expect "  ... with a clear error" err_clear
  run $cmd "$TMP/notalog"
  expect "$cmd on a directory that is not a log fails" rc_nonzero
  expect "  ... with a clear error" err_clear
done

# --- usage -------------------------------------------------------------------------
run
expect "no command is a usage error" rc_is 2
run frobnicate "$D"
expect "an unknown command is a usage error" rc_is 2
run create "$TMP/other" --segment-size 12Q
expect "a malformed --segment-size is a usage error" rc_is 2
run create "$TMP/other2" --segment-size 3M
expect "a segment size that is not a power of two is refused" rc_nonzero
expect "  ... with a clear error" err_clear
run --help
expect "--help exits 0" rc_is 0

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
