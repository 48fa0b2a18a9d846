#!/usr/bin/env bash
# End-to-end checks of the varve command line tool, run against a scratch log.
#   bash tests/cli_test.sh path/to/varve      (needs python3 to compare JSON)
set -u

VARVE=${1:?usage: cli_test.sh path/to/varve}
source "$(dirname "$0")/cli_lib.sh"
D=$TMP/log
SEG=$D/00000000000000000000.seg

# --- create ------------------------------------------------------------------
input </dev/null
run create "$D" --segment-size 1M
expect "create succeeds" rc_is 0
run create "$D"
expect "create refuses a directory that already holds a log, with exit 6" rc_is 6
expect "  ... with a clear error" err_has 'already holds a varve log'

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
run read "$D" --correlation aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee
expect "read --correlation prints that id's events only" py 'len(out) == 1 and out[0]["stream"] == "order-2" and out[0]["version"] == 2'
run read "$D" --correlation aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee --stream order-2
expect "  ... also within one stream" py 'len(out) == 1 and out[0]["version"] == 2'
run read "$D" --correlation aaaaaaaa-bbbb-cccc-dddd-000000000000
expect "  ... and nothing for an id no event carries" out_lines 0
run read "$D" --correlation not-a-uuid
expect "a malformed --correlation is a usage error (exit 2)" rc_is 2
expect "  ... naming the flag" err_has '--correlation'
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
printf '{"stream":"order-7","type":"T","data":1}\0garbage\n' >"$TMP/in"
run append "$D"
expect "a NUL byte ends no line early: the line is refused" err_has 'line 1: not valid JSON: a NUL byte at column 41'
expect "  ... with exit 1" rc_is 1
printf '%s\n' '{"stream":"order-7","type":"T","data":1,"event_id":"not-a-uuid"}' >"$TMP/in"
run append "$D"
expect "a non-UUID id is rejected clearly" err_has 'line 1: "event_id" must be a UUID'

# --- bounds on a line (issue 15.9) ------------------------------------------------
B=$TMP/bounds
input </dev/null
run create "$B" --segment-size 64K
# 100,000 nested arrays once killed append with SIGSEGV (a recursive serializer).
python3 - "$TMP/in" <<'PYEOF'
import sys
n = 100000
with open(sys.argv[1], "w") as f:
    f.write('{"stream":"b-1","type":"T","data":1}\n')
    f.write('{"stream":"b-2","type":"T","data":' + "[" * n + "]" * n + '}\n')
    f.write('{"stream":"b-3","type":"T","data":3}\n')
PYEOF
run append "$B"
expect "data nested 100,000 deep is refused with exit 1, not a crash" rc_is 1
expect "  ... naming the line and the bound" err_has 'line 2: .* deeper than --max-depth 512 allows'
expect "  ... after acking the line before it" py 'len(out) == 1 and out[0]["stream"] == "b-1"'
run read "$B"
expect "  ... which is in the log, and nothing after it" py '[e["stream"] for e in out] == ["b-1"]'
python3 -c 'n = 600; print("{\"stream\":\"b-4\",\"type\":\"T\",\"data\":" + "[" * n + "]" * n + "}")' >"$TMP/in"
run append "$B"
expect "600 levels are refused by default" rc_is 1
run append "$B" --max-depth 600
expect "  ... and taken with --max-depth 600" rc_is 0
expect "  ... and acked" out_lines 1
usage_case "append --max-depth 0" append "$B" --max-depth 0
usage_case "append --max-depth 4001" append "$B" --max-depth 4001
usage_case "append --max-depth x" append "$B" --max-depth x
usage_case "append --max-line-bytes 0" append "$B" --max-line-bytes 0
usage_case "append --max-line-bytes 1Q" append "$B" --max-line-bytes 1Q
# A 100 MB line once took ~500 MB of memory before being refused; now the
# reader stops at the bound (+ one 1 MiB read chunk).
python3 - "$TMP/in" <<'PYEOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write('{"stream":"b-5","type":"T","data":5}\n')
    f.write('{"stream":"b-6","type":"T","data":"' + "x" * (100 << 20) + '"}\n')
    f.write('{"stream":"b-7","type":"T","data":7}\n')
PYEOF
# The peak memory of one `varve append` (a fresh Python per run, so
# RUSAGE_CHILDREN sees that run alone), against a baseline run over a small
# input (none): a sanitizer build's own overhead (tens of MiB of shadow memory)
# must not pass for buffering, nor hide it.
append_rss() {
  python3 - "$VARVE" "$B" "$1" "$TMP/out" "$TMP/err" <<'PYEOF'
import resource, subprocess, sys
varve, log, src, out, err = sys.argv[1:]
r = subprocess.run([varve, "append", log, "--max-line-bytes", "1M"], stdin=open(src, "rb"),
                   stdout=open(out, "wb"), stderr=open(err, "wb"))
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PYEOF
}
: > "$TMP/empty"
base_kb=$(append_rss "$TMP/empty")
base_kb=${base_kb#* }
maxrss_kb=$(append_rss "$TMP/in")
rc=${maxrss_kb% *}
maxrss_kb=${maxrss_kb#* }
expect "a line over --max-line-bytes is refused with exit 1" rc_is 1
expect "  ... naming the line and the bound" err_has 'line 2: longer than 1048576 bytes (--max-line-bytes'
expect "  ... after acking the line before it" py 'len(out) == 1 and out[0]["stream"] == "b-5"'
expect "  ... without buffering the 100 MB line (max RSS ${maxrss_kb} KiB, ${base_kb} KiB with no input: < 24 MiB more)" \
  test "$((maxrss_kb - base_kb))" -lt 24576
rm -f "$TMP/in"

# --- optimistic concurrency ----------------------------------------------------
input <<'EOF'
{"stream":"order-1","type":"OrderCancelled","expected_version":5,"data":{}}
{"stream":"order-8","type":"OrderPlaced","data":{}}
EOF
run append "$D"
expect "a wrong expected_version fails by default, with exit 3" rc_is 3
expect "  ... naming line, stream, expected and actual versions" err_has 'line 1: wrong expected version for stream "order-1": expected 5, actual 2'
expect "  ... and appends nothing after it" out_lines 0
run append "$D" --on-conflict skip
expect "--on-conflict skip carries on and exits 0" rc_is 0
expect "  ... acking the next line" py 'len(out) == 1 and out[0]["stream"] == "order-8"'
expect "  ... reporting the skipped line" err_has 'line 1: wrong expected version for stream "order-1": expected 5, actual 2 (skipped)'
run append "$D" --on-conflict maybe
expect "an unknown --on-conflict value is a usage error" rc_is 2

# A conflict in the middle: the lines before it are appended and acked, the
# ones after it are not; each kind of expectation is checked.
input <<'EOF2'
{"stream":"occ-1","type":"T","expected_version":"no_stream","data":1}
{"stream":"occ-1","type":"T","expected_version":1,"data":2}
{"stream":"occ-1","type":"T","expected_version":"no_stream","data":3}
{"stream":"occ-2","type":"T","data":4}
EOF2
run append "$D"
expect "a conflict after good lines exits 3" rc_is 3
expect "  ... after acking the lines before it" py 'len(out) == 2 and [a["last_version"] for a in out] == [1, 2]'
expect "  ... naming the expectation no_stream" err_has 'line 3: wrong expected version for stream "occ-1": expected no_stream, actual 2'
run read "$D"
expect "  ... and nothing after the conflict is in the log" py '[e["data"] for e in out if e["stream"] == "occ-1"] == [1, 2] and not any(e["stream"] == "occ-2" for e in out)'

input <<'EOF2'
{"stream":"occ-3","type":"T","expected_version":"stream_exists","data":1}
{"stream":"occ-1","expected_version":1,"events":[{"type":"T","data":5},{"type":"T","data":6}]}
{"stream":"occ-1","expected_version":2,"events":[{"type":"T","data":7},{"type":"T","data":8}]}
{"stream":42,"type":"T","expected_version":9,"data":9}
{"stream":"occ-1","type":"T","expected_version":4,"data":10}
EOF2
run append "$D" --on-conflict skip
expect "skip: conflicts of every kind are skipped, exit 0" rc_is 0
expect "  ... stream_exists on a new stream" err_has 'line 1: wrong expected version for stream "occ-3": expected stream_exists, actual 0 (skipped)'
expect "  ... a batch" err_has 'line 2: wrong expected version for stream "occ-1": expected 1, actual 2 (skipped)'
expect "  ... an integer stream" err_has 'line 4: wrong expected version for stream 42: expected 9, actual 1 (skipped)'
expect "  ... with a count at the end" err_has '3 line(s) skipped on version conflicts'
expect "  ... and the other lines appended" py '[(a["stream"], a["first_version"], a["last_version"]) for a in out] == [("occ-1", 3, 4), ("occ-1", 5, 5)]'
run read "$D"
expect "  ... a skipped batch leaves no event behind" py '[e["data"] for e in out if e["stream"] == "occ-1"] == [1, 2, 7, 8, 10] and not any(e["stream"] == "occ-3" for e in out)'

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
expect "verify fails a corrupted log with exit 4" rc_is 4
expect "  ... naming the segment file" err_has '00000000000000000000.seg'
run verify "$D" --json
expect "verify --json reports the problem" py 'out[0]["intact"] is False and "problem" in out[0]'
run read "$D"
expect "read of a corrupted record fails with exit 4, without crashing" rc_is 4
expect "  ... with a clear error" err_clear

# --- the tamper-evident chain ----------------------------------------------------
C="$TMP/chained"
run create "$C" --segment-size 64K --chain --json
expect "create --chain" py 'out[0]["chain"] is True'
python3 -c 'import json
for i in range(600): print(json.dumps({"stream": "c-%d" % (i % 7), "type": "T", "data": {"i": i, "pad": "x" * 200}}))' >"$TMP/in"
run append "$C"
expect "appends that seal segments" rc_is 0
run verify "$C" --chain
expect "verify --chain passes" rc_is 0
expect "  ... and prints the head" out_has 'head '
run verify "$C" --chain --json
expect "verify --chain --json: entries from segment 0" py 'out[0]["intact"] and out[0]["entries"] >= 2 and out[0]["first_segment"] == 0 and len(out[0]["head"]) == 64'
cp "$TMP/out" "$TMP/expected"
run stat "$C" --json
expect "stat --json carries the chain head" py 'out[0]["chain"]["head"] == expected[0]["head"]'
rm -f "$TMP/expected"
run stat "$C"
expect "stat prints the chain head" out_has 'chain head'
# Any byte of a chained segment changed: verify --chain fails, naming it.
CSEG="$C/00000000000000000001.seg"
flip_byte "$CSEG" $((64 * 1024 - 200))
run verify "$C" --chain
expect "verify --chain fails an edited segment with exit 4" rc_is 4
expect "  ... naming it" err_has '00000000000000000001.seg'
run verify "$D" --chain
expect "verify --chain of a log without a chain fails clearly" rc_nonzero
expect "  ... saying so" err_has 'no chain'

# --- retention -----------------------------------------------------------------------
R="$TMP/retained"
run create "$R" --segment-size 64K
python3 -c 'import json
for i in range(2000): print(json.dumps({"stream": "r-%d" % (i % 7), "type": "T", "data": {"i": i, "pad": "x" * 200}}))' >"$TMP/in"
run append "$R"
expect "appends over several segments" rc_is 0
run retain "$R"
expect "retain without a limit is a usage error" rc_is 2
run retain "$R" --max-age 0s
expect "retain --max-age 0s is a usage error" rc_is 2
run retain "$R" --max-age 3x
expect "retain --max-age with an unknown unit is a usage error" rc_is 2
BEFORE=$((4 * 65536 + 64))
run retain "$R" --before $BEFORE --dry-run --json
expect "retain --dry-run says what would go" py 'out[0]["dry_run"] and out[0]["segments_removed"] == 4 and out[0]["start_position"] == 4 * 65536 + 64'
expect "  ... and removes nothing" test -f "$R/00000000000000000000.seg"
run retain "$R" --before $BEFORE --json
expect "retain --before removes the segments before the position" py 'out[0]["segments_removed"] == 4 and out[0]["first_segment"] == 4 and out[0]["events_removed"] == out[0]["first_sequence"] > 0'
cp "$TMP/out" "$TMP/retained.json"
expect "  ... and their files" test ! -e "$R/00000000000000000003.seg"
expect "  ... keeping the start durably" test -s "$R/start"
run stat "$R" --json
expect "stat --json reports the start" python3 -c 'import json, sys
s = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
sys.exit(0 if s["start_position"] == r["start_position"] and s["first_sequence"] == r["first_sequence"] and s["chain_head"] is None else 1)' "$TMP/out" "$TMP/retained.json"
run stat "$R"
expect "stat prints the start" out_has 'retention removed what came before'
run metrics "$R"
expect "metrics export the start" grep -q "^varve_start_position_bytes{.*} $BEFORE\$" "$TMP/out"
run read "$R" --limit 1
expect "read from the beginning starts at the new start" python3 -c 'import json, sys
e = json.loads(open(sys.argv[1]).readline()); r = json.load(open(sys.argv[2]))
sys.exit(0 if e["position"] == r["start_position"] and e["sequence"] == r["first_sequence"] else 1)' "$TMP/out" "$TMP/retained.json"
run read "$R" --from-position 64
expect "read below the start: exit 5" rc_is 5
expect "  ... saying where the log starts" err_has "removed by retention: the log now starts at position $BEFORE"
run read "$R" --stream r-1
expect "a stream read that needs removed versions: exit 5" rc_is 5
expect "  ... saying which version to read from" err_has 'read from version'
run verify "$R"
expect "verify passes after retention" rc_is 0
run index verify "$R"
expect "index verify passes after retention" rc_is 0
run index rebuild "$R"
expect "index rebuild after retention (heads from the checkpoint past the start)" rc_is 0
run index verify "$R"
expect "  ... and what it wrote verifies" rc_is 0
run replay "$R" --projection count-by-type --json
expect "replay from the beginning folds what is left" python3 -c 'import json, sys
o = json.loads(open(sys.argv[1]).read()); r = json.load(open(sys.argv[2]))
sys.exit(0 if o["events"] == 2000 - r["events_removed"] else 1)' "$TMP/out" "$TMP/retained.json"
run replay "$R" --projection count-by-type --from-position 64
expect "replay from a removed position: exit 5" rc_is 5
run retain "$R" --max-age 1w --json
expect "retain --max-age: recent events stay" py 'out[0]["segments_removed"] == 0'
run retain "$R" --max-bytes 192K --json
expect "retain --max-bytes keeps at most that many bytes of segments" py 'out[0]["segments_removed"] > 0 and out[0]["first_segment"] > 4'
run retain "$R" --before 999999999999
expect "retain of everything: held back at the newest checkpoint" out_has 'held back: '

# --- archive tier --------------------------------------------------------------------
A="$TMP/archived"
AR="$TMP/cold/archive"
run create "$A" --segment-size 64K
python3 -c 'import json
for i in range(2000): print(json.dumps({"stream": "a-%d" % (i % 5), "type": "Deposited", "data": {"account": "a-%d" % (i % 5), "amount_cents": i * 37 % 10000, "note": "monthly transfer %d" % i}}))' >"$TMP/in"
run append "$A"
expect "appends over several segments" rc_is 0
run read "$A"
cp "$TMP/out" "$TMP/archived-before.jsonl"
run archive "$A"
expect "archive without --to is a usage error" rc_is 2
run archive "$A" --to "$AR" --level 40
expect "archive --level out of range is a usage error" rc_is 2
run archive "$A" --to "$AR" --frame-bytes 5000
expect "archive --frame-bytes that is not a power of two is a usage error" rc_is 2
run archive "$A" --to "$AR" --before $((3 * 65536 + 64)) --dry-run --json
expect "archive --dry-run says what would move" py 'out[0]["dry_run"] and out[0]["segments_archived"] == 3 and out[0]["archived_bytes"] == 0 and out[0]["archive_end"] == 3'
expect "  ... and moves nothing" test -f "$A/00000000000000000000.seg"
run archive "$A" --to "$AR" --before $((3 * 65536 + 64)) --json
expect "archive --before moves the sealed segments before the position" py 'out[0]["segments_archived"] == 3 and 0 < out[0]["archived_bytes"] * 3 < out[0]["raw_bytes"]'
expect "  ... out of the log's directory" test ! -e "$A/00000000000000000002.seg"
expect "  ... into the archive" test -s "$AR/00000000000000000002.varc"
expect "  ... recording where" test -s "$A/archive"
run read "$A"
expect "read gives back every event, archived or not" cmp -s "$TMP/out" "$TMP/archived-before.jsonl"
run read "$A" --stream a-3
expect "a stream read reaches its archived versions" py 'len(out) == 400 and [e["version"] for e in out] == list(range(1, 401))'
run verify "$A"
expect "verify covers the archive" rc_is 0
run index verify "$A"
expect "index verify passes with archived segments" rc_is 0
run replay "$A" --projection count-by-type --json
expect "replay folds the archived events too" py 'out[0]["events"] == 2000'
run stat "$A" --json
expect "stat --json reports the archive" py 'out[0]["archive"]["segments"] == 3 and out[0]["archive"]["dir"].endswith("/cold/archive") and out[0]["archive"]["bytes_on_disk"] > 0'
run stat "$A"
expect "stat prints the archive" out_has 'archive '
run archive "$A" --to "$TMP/elsewhere"
expect "a log has one archive" rc_nonzero
expect "  ... saying where it is" err_has 'cold/archive'
run archive "$A" --to "$AR" --frame-bytes 16K --json
expect "a second pass moves every sealed segment since" py 'out[0]["segments_archived"] > 0'
flip_byte "$AR/00000000000000000001.varc" 300
run verify "$A"
expect "verify fails a damaged archive file with exit 4" rc_is 4
expect "  ... naming it" err_has '00000000000000000001.varc'
mv "$AR" "$TMP/cold/unmounted"
run read "$A" --limit 1
expect "an archive that is not there: read fails" rc_nonzero
run append "$A"
expect "  ... and so does the writer's open" rc_nonzero
expect "  ... asking whether it is mounted" err_has 'mounted'

# --- what is not a log -------------------------------------------------------------
mkdir -p "$TMP/notalog"
echo hello >"$TMP/notalog/readme.txt"
for cmd in read stat verify append tail replay "index verify" "snapshot ls"; do
  extra=""
  [ "$cmd" = replay ] && extra="--projection count-by-type"
  run $cmd "$TMP/missing" $extra
  expect "$cmd on a missing directory: no such log, exit 5" rc_is 5
  expect "  ... with a clear error" err_clear
  run $cmd "$TMP/notalog" $extra
  expect "$cmd on a directory holding no log: no such log, exit 5" rc_is 5
  expect "  ... with a clear error" err_clear
done
run append "$TMP/missing"
expect "  ... append says how to make one" err_has 'varve create.*--create'
echo garbage >"$TMP/notalog/varve.meta"
run stat "$TMP/notalog"
expect "stat of a log whose varve.meta is garbage: the log cannot be used, exit 1" rc_is 1
expect "  ... with a clear error" err_clear

echo hello >"$TMP/afile"
for cmd in read stat verify append create; do
  run $cmd "$TMP/afile"
  expect "$cmd on a file that is not a directory fails with exit 1" rc_is 1
  expect "  ... saying so" err_has "afile: not a directory"
done
run append "$TMP/afile" --create
expect "append --create on a file fails with exit 1" rc_is 1
expect "  ... saying so" err_has "afile: not a directory"

# --- usage: every malformed command line is exit 2 and one clear line -------------
C=$TMP/clean  # $D is corrupt by now
printf '%s\n' '{"stream":"c","type":"T","data":1}' '{"stream":"c","type":"T","data":2}' >"$TMP/in"
run append "$C" --create
expect "a clean log for the usage cases" rc_is 0
input </dev/null
run
expect "no command is a usage error" rc_is 2
run frobnicate "$D"
expect "an unknown command is a usage error" rc_is 2
run create "$TMP/other2" --segment-size 3M
expect "a segment size that is not a power of two is a usage error" rc_is 2
expect "  ... with a clear error" err_has 'segment size 3145728 is not a power of two'
expect "  ... and creates nothing" test ! -e "$TMP/other2/varve.meta"
for size in 12Q -1 -64M 64MX 64MBB 1.5M " 64M" 64M\  "" 0 99999999999999999999999 17179869184G 16G 1K; do
  usage_case "create --segment-size '$size'" create "$TMP/other3" --segment-size "$size"
done
expect "  ... and none of them made a log" test ! -e "$TMP/other3/varve.meta"
usage_case "append --create --segment-size 5M" append "$TMP/other4" --create --segment-size 5M
usage_case "append --segment-size without --create" append "$C" --segment-size 1M
usage_case "append --durability fast" append "$C" --durability fast
for n in -1 -0 abc 5x " 5" 5.0 1e3 0x10 18446744073709551616 99999999999999999999999 ""; do
  usage_case "read --limit '$n'" read "$C" --limit "$n"
  usage_case "read --from-position '$n'" read "$C" --from-position "$n"
done
run read "$C" --limit 18446744073709551615
expect "read --limit UINT64_MAX is fine" rc_is 0
expect "  ... and prints the events" out_lines 2
usage_case "read --limit without a value" read "$C" --limit
usage_case "read with two directories" read "$C" "$C"
usage_case "an unknown flag" stat "$C" --bogus
for cmd in create append read stat verify; do
  usage_case "$cmd without DIR" $cmd
  usage_case "$cmd with an empty DIR" $cmd ""
done
usage_case "read --from-position inside a record" read "$C" --from-position 100
run read "$C" --from-position 72
expect "read --from-position on a record's middle fails without crashing" rc_is 1
expect "  ... hinting at the position" err_has 'is --from-position 72 the position of a record'
run read "$C" --from-position 18446744073709551615
expect "read --from-position past the end prints nothing" rc_is 0
expect "  ... at all" out_lines 0
# --- streams, time, index (the per-aggregate index) ---------------------------
X=$TMP/streams
input </dev/null
run create "$X" --segment-size 64K
python3 - "$TMP/in" <<'PYEOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(1, 3001):
        stream = 42 if i % 5 == 0 else "order-%d" % (i % 7)
        f.write(json.dumps({"stream": stream, "type": "T", "timestamp": 1700000000000000000 + i * 1000000000, "data": {"i": i}}) + "\n")
PYEOF
run append "$X"
expect "append 3000 events over 8 streams" rc_is 0
input </dev/null
run read "$X" --stream order-3
expect "read --stream prints that stream" py 'len(out) > 300 and all(e["stream"] == "order-3" for e in out) and [e["version"] for e in out] == list(range(1, len(out) + 1))'
run read "$X" --stream order-3 --from-version 10 --limit 3
expect "read --stream --from-version --limit" py '[e["version"] for e in out] == [10, 11, 12]'
run read "$X" --stream order-3 --backward --limit 2
expect "read --stream --backward starts at the newest" py 'len(out) == 2 and out[0]["version"] == out[1]["version"] + 1 and out[0]["data"]["i"] > 2990'
run read "$X" --stream-u64 42 --from-version 600
expect "read --stream-u64 reads an integer stream" py '[e["version"] for e in out] == [600] and out[0]["stream"] == 42'
run read "$X" --stream nobody
expect "read --stream of an absent stream prints nothing" out_lines 0
run read "$X" --since 2023-11-14T22:13:20Z --limit 1
expect "read --since (RFC 3339) starts at the first event at or after it" py 'out[0]["data"]["i"] == 1'
run read "$X" --since 1700001500000000001 --limit 1
expect "read --since (ns) lands between two events" py 'out[0]["data"]["i"] == 1501'
run read "$X" --since 2023-11-14T23:38:20.5+01:00 --limit 1
expect "read --since with an offset and a fraction" py 'out[0]["data"]["i"] == 1501'
usage_case "read --since garbage" read "$X" --since yesterday
usage_case "read --since a date without a zone" read "$X" --since 2023-11-14T22:13:20
usage_case "read --stream with --from-position" read "$X" --stream a --from-position 64
usage_case "read --backward without --stream" read "$X" --backward
usage_case "read --from-version not a number" read "$X" --stream a --from-version -1
run index verify "$X"
expect "index verify: intact" rc_is 0
rm "$X"/index/00000000000000000001.sidx
run index verify "$X"
expect "index verify finds a missing index file (exit 4)" rc_is 4
expect "  ... and names it" err_has '00000000000000000001.sidx'
run index rebuild "$X"
expect "index rebuild" rc_is 0
run index verify "$X" --json
expect "index verify after rebuild: intact" py 'out[0]["intact"] and out[0]["index_files"] == out[0]["sealed_segments"]'
usage_case "index with an unknown action" index frobnicate "$X"

# --- tail: history, then live ---------------------------------------------------
T=$TMP/tail
printf '%s\n' '{"stream":"order-1","type":"T","data":1}' '{"stream":"cust-1","type":"T","data":2}' \
  '{"stream":"order-1","type":"T","data":3}' '{"stream":"cust-1","type":"T","data":4}' \
  '{"stream":"order-2","type":"T","data":5}' >"$TMP/in"
run append "$T" --create --segment-size 64K
expect "a log for tail" rc_is 0
input </dev/null
run tail "$T" --from-position 0 --limit 3
expect "tail --from-position 0 --limit 3: the first three events, then exit 0" rc_is 0
expect "  ... as NDJSON like read" py '[e["data"] for e in out] == [1, 2, 3] and out[0]["stream"] == "order-1"'
run tail "$T" --from-position 0 --category order- --limit 3
expect "tail --category order-" py '[e["data"] for e in out] == [1, 3, 5]'
run tail "$T" --from-position 0 --stream cust-1 --limit 2
expect "tail --stream cust-1" py '[e["data"] for e in out] == [2, 4]'
run tail "$T" --from-position 0 --stream cust-1 --category order-2 --limit 3
expect "tail --stream and --category add up (an event matches either)" py '[e["data"] for e in out] == [2, 4, 5]'
run stat "$T" --json
end=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["committed"])' "$TMP/out")
# A follower started at the end sees what a concurrent `varve append` adds.
"$VARVE" tail "$T" --from-position "$end" --limit 2 >"$TMP/tail_live" 2>"$TMP/tail_err" &
tailer=$!
sleep 0.2
# Of a type registered after the follower started: it prints the name.
printf '%s\n' '{"stream":"order-3","type":"T","data":6}' '{"stream":"order-3","type":"Late","data":7}' >"$TMP/in"
run append "$T"
for _ in $(seq 100); do kill -0 "$tailer" 2>/dev/null || break; sleep 0.1; done
kill "$tailer" 2>/dev/null
wait "$tailer"
rc=$?
cp "$TMP/tail_live" "$TMP/out"
expect "tail follows a concurrent append live and stops at --limit (exit 0)" rc_is 0
expect "  ... printing exactly the new events" py '[e["data"] for e in out] == [6, 7]'
expect "  ... a type named after it started by its name" py '[e["type"] for e in out] == ["T", "Late"]'
# Ctrl-C / SIGTERM: a clean exit 0 with everything printed so far flushed.
for sig in INT TERM; do
  "$VARVE" tail "$T" --from-position 0 >"$TMP/tail_sig" 2>"$TMP/tail_err" &
  tailer=$!
  # Up to 60 s: the handler is installed before the first line is printed,
  # but a sanitizer build on a loaded machine took more than the 5 s this
  # once allowed, and the signal then killed a tail that had no handler yet.
  for _ in $(seq 1200); do [ "$(grep -c . "$TMP/tail_sig")" -ge 7 ] && break; sleep 0.05; done
  kill -s "$sig" "$tailer"
  wait "$tailer"
  rc=$?
  cp "$TMP/tail_sig" "$TMP/out"
  cp "$TMP/tail_err" "$TMP/err"
  expect "tail exits 0 on SIG$sig" rc_is 0
  expect "  ... having printed every event" out_lines 7
done
input </dev/null
# --name: the next run resumes where the last one stopped.
run tail "$T" --name proj --from-position 0 --limit 2
expect "tail --name (first run)" py '[e["data"] for e in out] == [1, 2]'
run tail "$T" --name proj --limit 3
expect "tail --name resumes after what it printed" py '[e["data"] for e in out] == [3, 4, 5]'
expect "  ... from DIR/subscriptions/NAME.pos" test -s "$T/subscriptions/proj.pos"
printf 'garbage' >"$T/subscriptions/proj.pos"
run tail "$T" --name proj --limit 1
expect "tail --name with a damaged position file fails with exit 4" rc_is 4
expect "  ... naming the file" err_has 'subscriptions/proj.pos'
usage_case "tail --from-position garbage" tail "$T" --from-position x1
usage_case "tail --from-position not a record" tail "$T" --from-position 67
usage_case "tail --from-position past the end" tail "$T" --from-position 999999999
usage_case "tail --limit -1" tail "$T" --limit -1
usage_case "tail --name with a slash" tail "$T" --name ../x

# --- replay ------------------------------------------------------------------
R=$TMP/replaylog
python3 -c '
for i in range(1, 1201):
    print("{\"stream\":\"%s-%d\",\"type\":%d,\"data\":{\"i\":%d}}" % ("order" if i % 3 else "cart", i % 40, i % 4, i))
' | "$VARVE" append "$R" --create --segment-size 64K >/dev/null 2>&1
input </dev/null
run replay "$R" --projection count-by-type --threads 2 --partitions 5 --json
expect "replay count-by-type" py 'out[0]["result"] == {"0": 300, "1": 300, "2": 300, "3": 300} and out[0]["events"] == 1200 and out[0]["error"] is None'
for io in uring mmap pread; do
  run replay "$R" --projection bytes-by-stream --io $io --json --top 1000
  expect "replay bytes-by-stream --io $io" py 'out[0]["io"] == "'$io'" and out[0]["result"]["streams"] == 80 and sum(s["events"] for s in out[0]["result"]["top"]) == 1200'
done
run replay "$R" --projection bytes-by-stream --json --top 1000
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["result"], sort_keys=True))' "$TMP/out" >"$TMP/bytes-by-stream"
for io in uring mmap pread; do
  run replay "$R" --projection count-by-type --merge --threads 3 --io $io --json
  expect "replay --merge count-by-type --io $io" py 'out[0]["result"] == {"0": 300, "1": 300, "2": 300, "3": 300} and out[0]["events"] == 1200 and out[0]["partitions"] == 1 and out[0]["threads"] == 3'
  run replay "$R" --projection bytes-by-stream --merge --threads 2 --io $io --json --top 1000
  expect "replay --merge bytes-by-stream --io $io" py 'out[0]["result"]["streams"] == 80 and sum(s["events"] for s in out[0]["result"]["top"]) == 1200'
  expect "  ... the same streams, events and bytes as partitioned" py 'json.dumps(out[0]["result"], sort_keys=True) == open("'"$TMP"'/bytes-by-stream").read().strip()'
done
run replay "$R" --projection count-by-type --merge --threads 2 --checkpoint m --to-position "$(
  "$VARVE" read "$R" --limit 500 | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["position"])')" --json
expect "replay --merge --checkpoint saves part of the log" py 'out[0]["events"] == 499 and out[0]["checkpoints"] == 1'
run replay "$R" --projection count-by-type --merge --threads 2 --checkpoint m --resume --json
expect "replay --merge --resume counts every event once" py 'out[0]["result"] == {"0": 300, "1": 300, "2": 300, "3": 300} and out[0]["events"] == 701'
usage_case "replay --merge with --partitions" replay "$R" --projection count-by-type --merge --partitions 4
run replay "$R" --projection count-by-type --type 2 --category cart- --json
expect "replay --type --category filters" py 'out[0]["result"] == {"2": 100} and out[0]["events_filtered_out"] == 1100'
run replay "$R" --projection count-by-type --to-position 0 --json
expect "replay --to-position 0 applies nothing" py 'out[0]["events"] == 0 and out[0]["result"] == {}'
run replay "$R" --projection count-by-type --until 2000-01-01T00:00:00Z --json
expect "replay --until before the first event applies nothing" py 'out[0]["events"] == 0'
MID=$("$VARVE" read "$R" --limit 700 | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["position"])')
run replay "$R" --projection count-by-type --checkpoint c --to-position "$MID" --json
expect "replay --checkpoint saves part of the log" py 'out[0]["events"] == 699 and out[0]["checkpoints"] == 1'
expect "  ... in DIR/projections/NAME.<generation>.ckpt" test -s "$R/projections/c.00000000000000000001.ckpt"
run replay "$R" --projection count-by-type --checkpoint c --resume --json
expect "replay --resume finishes with every event counted once" py 'out[0]["result"] == {"0": 300, "1": 300, "2": 300, "3": 300} and out[0]["events"] == 501'
for f in "$R"/projections/c.*.ckpt; do printf 'VARVECKPgarbage' >"$f"; done
run replay "$R" --projection count-by-type --snapshot c --from-snapshot --json
expect "replay --from-snapshot with damaged snapshots rebuilds from the log" py 'out[0]["result"] == {"0": 300, "1": 300, "2": 300, "3": 300} and out[0]["events"] == 1200 and len(out[0]["warnings"]) == 2'
expect "  ... naming the files" err_has 'projections/c.00000000000000000002.ckpt'
run replay "$R" --projection count-by-type --threads 2
expect "replay prints a figures line" err_has 'events/s'
usage_case "replay without --projection" replay "$R"
usage_case "replay --projection unknown" replay "$R" --projection sum
usage_case "replay --threads 0" replay "$R" --projection count-by-type --threads 0
usage_case "replay --partitions x" replay "$R" --projection count-by-type --partitions x
usage_case "replay --io bogus" replay "$R" --projection count-by-type --io bogus
usage_case "replay --until garbage" replay "$R" --projection count-by-type --until yesterday
usage_case "replay --to-position with --until" replay "$R" --projection count-by-type --to-position 5 --until 5
usage_case "replay --resume without --checkpoint" replay "$R" --projection count-by-type --resume
usage_case "replay --checkpoint a/path" replay "$R" --projection count-by-type --checkpoint ../x
usage_case "replay --from-position past the end" replay "$R" --projection count-by-type --from-position 99999999

# --- snapshot ------------------------------------------------------------------
S=$TMP/snaplog
python3 -c '
for i in range(1, 21):
    print("{\"stream\":\"acct-%d\",\"type\":\"Deposited\",\"data\":{\"i\":%d}}" % (i % 2, i))
print("{\"stream\":7,\"type\":\"Blob\",\"data\":1}")
' | "$VARVE" append "$S" --create --segment-size 64K >/dev/null 2>&1
input </dev/null
run snapshot verify "$S"
expect "snapshot verify with no snapshots yet is intact" rc_is 0
printf 'state-of-acct-0-at-4' >"$TMP/in"
run snapshot save "$S" --stream acct-0 --version 4
expect "snapshot save" rc_is 0
printf 'state-at-8' >"$TMP/in"
run snapshot save "$S" --stream acct-0 --version 8 --schema 2
expect "snapshot save --schema" rc_is 0
printf 'int' >"$TMP/in"
run snapshot save "$S" --stream-u64 7 --version 1
expect "snapshot save --stream-u64" rc_is 0
run snapshot save "$S" --stream acct-0 --version 11
expect "snapshot save at a version the stream does not have is refused: not found, exit 5" rc_is 5
expect "  ... saying so" err_has 'stream "acct-0" has no event at version 11 (it is at version 10)'
run snapshot save "$S" --stream nobody --version 1
expect "snapshot save of a stream that does not exist: exit 5" rc_is 5
expect "  ... saying so" err_has 'stream "nobody" not found'
input </dev/null
run snapshot ls "$S" --json
expect "snapshot ls lists every snapshot" py 'len(out) == 3 and [(o["stream"], o["version"], o["schema_version"], o["bytes"]) for o in out] == [("acct-0", 4, 1, 20), ("acct-0", 8, 2, 10), (7, 1, 1, 3)]'
run snapshot ls "$S" --stream acct-0 --json
expect "snapshot ls --stream" py 'len(out) == 2 and all(o["stream"] == "acct-0" for o in out)'
run snapshot ls "$S" --stream-u64 7 --json
expect "snapshot ls --stream-u64" py 'len(out) == 1 and out[0]["stream"] == 7'
run snapshot ls "$S"
expect "snapshot ls prints a table" grep -q 'acct-0' "$TMP/out"
run snapshot verify "$S" --json
expect "snapshot verify --json: intact" py 'out[0]["intact"] and out[0]["snapshots"] == 3 and out[0]["files"] == 1'
SNAPF=$S/snapshots/00000000000000000000.snap
OFF=$("$VARVE" snapshot ls "$S" --stream acct-0 --json | python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin][1]["offset"])')
python3 - "$SNAPF" "$((OFF + 130))" <<'EOF2'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xFF]))
EOF2
run snapshot verify "$S"
expect "snapshot verify finds a damaged body (exit 4)" rc_is 4
expect "  ... naming the file and offset" err_has "00000000000000000000.snap offset $OFF"
run snapshot verify "$S" --json
expect "snapshot verify --json: not intact" py 'not out[0]["intact"] and out[0]["snapshots"] == 2 and len(out[0]["problems"]) == 1'
expect "  ... with exit 4" rc_is 4
run snapshot compact "$S" --keep 1 --json
expect "snapshot compact: the writer's only file is never rewritten" py 'out[0]["files_removed"] == 0 and out[0]["snapshots_copied"] == 0'
expect "  ... exit 0" rc_is 0
run snapshot compact "$S" --keep 1
expect "snapshot compact prints a summary" grep -q '0 files removed' "$TMP/out"
usage_case "snapshot compact without --keep" snapshot compact "$S"
usage_case "snapshot compact --keep 0" snapshot compact "$S" --keep 0
usage_case "snapshot compact --min-dead 2" snapshot compact "$S" --keep 1 --min-dead 2
run snapshot compact "$TMP/no-such-log" --keep 1
expect "snapshot compact of a missing log fails (exit 5)" rc_is 5
usage_case "snapshot without an action" snapshot
usage_case "snapshot ls --stream with --stream-u64" snapshot ls "$S" --stream a --stream-u64 1
usage_case "snapshot ls --stream-u64 x" snapshot ls "$S" --stream-u64 x
usage_case "snapshot save without --stream" snapshot save "$S" --version 1
usage_case "snapshot save --version 0" snapshot save "$S" --stream acct-0 --version 0
run snapshot verify "$TMP/no-such-log"
expect "snapshot verify of a missing log fails (exit 5)" rc_is 5
expect "  ... with a clear error" err_clear

# --- metadata -------------------------------------------------------------------
M=$TMP/meta
input <<'EOF'
{"stream":"m-1","type":"Tagged","data":1,"metadata":{"user":"ann","note":"h\u00e9 \"q\"","empty":""}}
{"stream":"m-1","type":"Tagged","data":2}
{"stream":"m-2","events":[{"type":"Tagged","data":3,"metadata":{"k":"v"}},{"type":"Tagged","data":4}]}
EOF
run append "$M" --create
expect "append events with metadata" rc_is 0
run read "$M"
expect "read prints each event's metadata, in order, and none where there is none" py '[e.get("metadata") for e in out] == [{"user": "ann", "note": "hé \"q\"", "empty": ""}, None, {"k": "v"}, None] and list(out[0]["metadata"]) == ["user", "note", "empty"]'
cp "$TMP/out" "$TMP/read-back"
input <"$TMP/read-back"
run append "$TMP/meta-copy" --create
run read "$TMP/meta-copy"
expect "  ... and what read prints appends again with the same metadata" py '[e.get("metadata") for e in out] == [{"user": "ann", "note": "hé \"q\"", "empty": ""}, None, {"k": "v"}, None]'
input <<'EOF'
{"stream":"m-3","type":"Tagged","data":1,"metadata":{"varve.type":"x"}}
EOF
run append "$M"
expect "append refuses a reserved metadata key (exit 1)" rc_is 1
expect "  ... naming it" err_has 'metadata\[0\]: key .varve.type.: keys starting with "varve." are reserved'
input <<'EOF'
{"stream":"m-3","type":"Tagged","data":1,"metadata":{"n":1}}
EOF
run append "$M"
expect "append refuses a metadata value that is not a string (exit 1)" rc_is 1
expect "  ... saying so" err_has 'the value of "n" must be a string'
run read "$M" --stream m-3
expect "  ... and wrote nothing" rc_is 5

# --- schema versions and upcasters ---------------------------------------------
U=$TMP/up
input <<'EOF'
{"stream":"cart-1","type":"ItemAdded","data":{"sku":"a","qty":2,"legacy":1}}
{"stream":"cart-1","type":"ItemAdded","schema_version":2,"data":{"sku":"b","quantity":1,"unit":"pc"}}
{"stream":"cart-1","type":"CartClosed","data":{}}
EOF
run append "$U" --create
expect "append events of two schema versions" rc_is 0
cat >"$TMP/up.json" <<'EOF'
{"upcasters": [
  {"type": "ItemAdded", "from": 1, "rename": {"qty": "quantity"}, "add": {"unit": "pc"}, "drop": ["legacy"]},
  {"type": "ItemAdded", "from": 2, "rename_type": "ItemPut"}
]}
EOF
run read "$U" --upcasters "$TMP/up.json"
expect "read --upcasters fails for a type name the log does not know (exit 1)" rc_is 1
expect "  ... naming the entry and the name" err_has 'upcasters\[1\]: "rename_type" .ItemPut. is not a registered type'
input <<'EOF'
{"stream":"other","type":"ItemPut","schema_version":3,"data":{"sku":"c","quantity":5,"unit":"kg"}}
EOF
run append "$U"
run read "$U" --upcasters "$TMP/up.json"
expect "read --upcasters hands every event out at its current version" py '[(e["type"], e["schema_version"], e.get("stored_schema_version"), e["data"]) for e in out] == [("ItemPut", 3, 1, {"sku": "a", "quantity": 2, "unit": "pc"}), ("ItemPut", 3, 2, {"sku": "b", "quantity": 1, "unit": "pc"}), ("CartClosed", 1, None, {}), ("ItemPut", 3, None, {"sku": "c", "quantity": 5, "unit": "kg"})]'
run read "$U" --stream cart-1 --upcasters "$TMP/up.json"
expect "  ... one stream too" py '[e["type"] for e in out] == ["ItemPut", "ItemPut", "CartClosed"]'
run read "$U"
expect "  ... while the log keeps what was written" py '[(e["type"], e["schema_version"], e["data"]) for e in out[:2]] == [("ItemAdded", 1, {"sku": "a", "qty": 2, "legacy": 1}), ("ItemAdded", 2, {"sku": "b", "quantity": 1, "unit": "pc"})] and "stored_schema_version" not in out[0]'
run replay "$U" --projection count-by-type --json --upcasters "$TMP/up.json"
expect "replay --upcasters counts the upcast types" py 'out[0]["result"] == {"ItemPut": 3, "CartClosed": 1}'
run consume "$U" --group up --limit 4 --upcasters "$TMP/up.json"
expect "consume --upcasters prints upcast events" py '[(e["type"], e["schema_version"]) for e in out] == [("ItemPut", 3), ("ItemPut", 3), ("CartClosed", 1), ("ItemPut", 3)]'
echo '{"upcasters": [{"type": "ItemAdded", "from": 1}, {"type": "ItemAdded", "from": 3}]}' >"$TMP/gap.json"
run read "$U" --upcasters "$TMP/gap.json"
expect "read --upcasters refuses a chain with a gap (exit 1)" rc_is 1
expect "  ... saying which version is missing" err_has 'none from version 2'
run read "$U" --upcasters "$TMP/no-such.json"
expect "read --upcasters of a missing file: exit 5" rc_is 5
run types "$U" --json
expect "types lists the log's types" py '[(t["id"], t["name"], t.get("current_version")) for t in out] == [(1, "ItemAdded", None), (2, "CartClosed", None), (3, "ItemPut", None)]'
run types "$U" --set ItemPut=3 --set Fresh=1
expect "types --set records current versions" rc_is 0
expect "  ... and lists them" grep -q 'ItemPut	version 3' "$TMP/out"
run types "$U" --set ItemPut=2
expect "types --set never lowers a version (exit 1)" rc_is 1
expect "  ... saying so" err_has 'versions never go down'
usage_case "types --set without a version" types "$U" --set ItemPut
usage_case "types --set ItemPut=0" types "$U" --set ItemPut=0
input <<'EOF'
{"stream":"other","type":"ItemPut","schema_version":4,"data":{}}
EOF
run append "$U"
expect "append refuses a version newer than the recorded one (exit 1)" rc_is 1
expect "  ... naming the type and both versions" err_has "'ItemPut' at schema version 4 is newer than its current version 3"
run read "$U" --stream other
expect "  ... and writes nothing" out_lines 1
run types "$TMP/no-such-log"
expect "types of a missing log fails (exit 5)" rc_is 5

run --help
expect "--help exits 0" rc_is 0
expect "  ... and documents the exit codes" grep -q '4 corruption (verify or index verify found the log not intact' "$TMP/out"

summary
