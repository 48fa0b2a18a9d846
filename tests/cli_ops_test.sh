#!/usr/bin/env bash
# End-to-end checks of what an operator relies on (issue 18.3): distinct exit
# codes, errors as JSON, typed and documented options, ISO 8601 timestamps,
# the same event filters on read, tail and replay, ack modes, progress on a
# terminal only, and stat / index verify saying what they checked.
#   bash tests/cli_ops_test.sh path/to/varve      (needs python3)
set -u

VARVE=${1:?usage: cli_ops_test.sh path/to/varve}
source "$(dirname "$0")/cli_lib.sh"
L=$TMP/log
# err_json PYTHON-EXPR: every stderr line is a JSON object; `errs` is the list
# of errors (warnings, such as the recovery notes every open prints, left out).
err_json() {
  python3 - "$TMP/err" "$1" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
warns = [e for e in lines if "warning" in e and e["warning"]["code"] != "recovery"]
errs = [e for e in lines if "warning" not in e] or warns
sys.exit(0 if errs and eval(sys.argv[2]) else 1)
EOF
}

# A log of 64K segments: orders, carts and an integer stream, three types.
input </dev/null
run create "$L" --segment-size 64K
python3 - "$TMP/in" <<'PYEOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(1, 1201):
        stream = 42 if i % 10 == 0 else ("order-%d" if i % 3 else "cart-%d") % (i % 4)
        kind = ["Placed", "Paid", "Shipped"][i % 3]
        f.write(json.dumps({"stream": stream, "type": kind, "data": {"i": i}, "timestamp": 1700000000000000000 + i}) + "\n")
PYEOF
run append "$L"
expect "a log of 1200 events over several segments" rc_is 0
input </dev/null

# --- exit codes ---------------------------------------------------------------------
run create "$L"
expect "exit 6: create on a log" rc_is 6
run read "$TMP/nothing"
expect "exit 5: no such log" rc_is 5
run read "$L" --stream nope
expect "exit 5: read --stream of a stream that does not exist" rc_is 5
expect "  ... saying so on stderr" err_has 'stream "nope" not found'
expect "  ... and printing nothing" out_lines 0
run read "$L" --stream order-1 --from-version 100000
expect "exit 0: an existing stream with nothing in the range" rc_is 0
expect "  ... prints nothing" out_lines 0
run read "$L" --stream order-1 --stream nope
expect "exit 5: any --stream named that does not exist" rc_is 5
run read "$L" --type NoSuchType
expect "exit 5: a --type name the log has never seen" rc_is 5
expect "  ... naming it" err_has 'no event type of that name'
printf '%s\n' '{"stream":"order-1","type":"Paid","expected_version":1,"data":1}' >"$TMP/in"
run append "$L"
expect "exit 3: a wrong expected_version" rc_is 3
input </dev/null
run read "$L" --limit -1
expect "exit 2: usage only" rc_is 2
cp -a "$L" "$TMP/damaged"
last_seg=$(ls "$TMP/damaged"/*.seg | tail -1)
truncate -s 1000 "$last_seg"
for cmd in "verify" "stat" "index verify" "read"; do
  run $cmd "$TMP/damaged"
  expect "exit 4: $cmd of a log with a truncated active segment" rc_is 4
  expect "  ... naming the segment" err_has "$(basename "$last_seg"): segment is 1000 bytes, expected 65536"
done
run --help
expect "--help documents every exit code" python3 -c '
import sys; t = open(sys.argv[1]).read()
sys.exit(0 if all(s in t for s in ["0 done", "1 error", "2 usage", "3 conflict", "4 corruption", "5 not found", "6 already exists"]) else 1)' "$TMP/out"
expect "--help says varve is Linux-only" grep -q 'Linux only' "$TMP/out"

# --- errors as JSON ---------------------------------------------------------------------
run read "$TMP/damaged" --json
expect "--json: corruption as one JSON object on stderr, exit 4" rc_is 4
expect "  ... with code, exit, message, file and offset" err_json 'len(errs) == 1 and errs[0]["error"]["code"] == "corruption" and errs[0]["error"]["exit"] == 4 and errs[0]["error"]["file"].endswith("'"$(basename "$last_seg")"'") and "segment is 1000 bytes" in errs[0]["error"]["message"]'
cp -a "$L" "$TMP/flipped"
python3 - "$TMP/flipped/00000000000000000000.seg" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(100); b = f.read(1); f.seek(100); f.write(bytes([b[0] ^ 0xFF]))
EOF
run verify "$TMP/flipped" --json
expect "--json: verify names the file and the offset of the damage" err_json 'errs[0]["error"]["file"].endswith("00000000000000000000.seg") and errs[0]["error"]["offset"] == 64'
expect "  ... exit 4" rc_is 4
run read "$L" --limit 5x --json
expect "--json: a usage error too" err_json 'errs[0]["error"]["code"] == "usage" and errs[0]["error"]["exit"] == 2 and "--limit" in errs[0]["error"]["message"]'
run read "$TMP/nothing" --json
expect "--json: not found" err_json 'errs[0]["error"]["code"] == "not_found" and errs[0]["error"]["exit"] == 5'
printf '%s\n' '{"stream":"j","type":"T","data":1}' '{"stream":"j","data":1}' >"$TMP/in"
run append "$L" --json
expect "--json: a refused input line carries its line number" err_json 'errs[0]["error"]["line"] == 2 and errs[0]["error"]["message"] == "missing \"type\"" and errs[0]["error"]["exit"] == 1'
printf '%s\n' '{"stream":"j","type":"T","expected_version":9,"data":1}' >"$TMP/in"
run append "$L" --json --on-conflict skip
expect "--json: warnings (a skipped conflict) are JSON too" err_json 'all("warning" in e for e in errs) and errs[0]["warning"]["code"] == "wrong_expected_version" and errs[0]["warning"]["line"] == 1'
input </dev/null
run read "$TMP/damaged"
expect "without --json errors stay one plain line" err_clear

# --- typed options in --help, still parsed strictly ----------------------------------------
run read --help
expect "read --help shows typed options" python3 -c '
import sys; t = open(sys.argv[1]).read()
sys.exit(0 if all(s in t for s in ["--limit UINT", "--since TIME", "--from-position POSITION", "--from-version VERSION", "--type TYPE"]) else 1)' "$TMP/out"
run create --help
expect "create --help shows --segment-size SIZE" grep -q -- '--segment-size SIZE' "$TMP/out"
run replay --help
expect "replay --help shows --threads UINT and --until TIME" python3 -c '
import sys; t = open(sys.argv[1]).read(); sys.exit(0 if "--threads UINT" in t and "--until TIME" in t else 1)' "$TMP/out"
for v in -1 " 5" 5x 0x10 1e3 ""; do
  usage_case "replay --threads '$v'" replay "$L" --projection count-by-type --threads "$v"
  usage_case "snapshot save --version '$v'" snapshot save "$L" --stream order-1 --version "$v"
  usage_case "append --max-line-bytes '$v'" append "$L" --max-line-bytes "$v"
done
run append --help
expect "append --help documents the expected_version keywords" python3 -c '
import sys; t = open(sys.argv[1]).read()
sys.exit(0 if all(s in t for s in ["expected_version", "\"any\"", "\"no_stream\"", "\"stream_exists\""]) else 1)' "$TMP/out"

# --- ISO 8601 timestamps --------------------------------------------------------------------
Z=$TMP/iso
printf '%s\n' '{"stream":"t","type":"T","data":1,"timestamp":"2026-11-22T10:00:00.123Z"}' \
  '{"stream":"t","type":"T","data":2,"timestamp":"2026-11-22T11:00:00.5+01:00"}' \
  '{"stream":"t","type":"T","data":3,"timestamp":1795435200000000007}' >"$TMP/in"
run append "$Z" --create --segment-size 64K
expect "append takes ISO 8601 timestamps with a zone, and integers" rc_is 0
input </dev/null
run read "$Z"
expect "  ... stored as nanoseconds" py '[e["timestamp"] for e in out] == [1795341600123000000, 1795341600500000000, 1795435200000000007]'
run read "$Z" --time-format iso
expect "read --time-format iso prints UTC with nine digits" py '[e["timestamp"] for e in out] == ["2026-11-22T10:00:00.123000000Z", "2026-11-22T10:00:00.500000000Z", "2026-11-23T12:00:00.000000007Z"]'
cp "$TMP/out" "$TMP/in"
run append "$TMP/iso-copy" --create --segment-size 64K
input </dev/null
run read "$TMP/iso-copy"
expect "  ... and append takes that back exactly" py '[e["timestamp"] for e in out] == [1795341600123000000, 1795341600500000000, 1795435200000000007]'
run tail "$Z" --from-position 0 --limit 1 --time-format iso
expect "tail --time-format iso" py 'out[0]["timestamp"] == "2026-11-22T10:00:00.123000000Z"'
for t in '"2026-11-22T10:00:00"' '"yesterday"' '"1969-12-31T23:59:59Z"' '"2026-11-22 10:00:00Z"' '-5' '"5"'; do
  printf '{"stream":"t","type":"T","data":1,"timestamp":%s}\n' "$t" >"$TMP/in"
  run append "$Z"
  expect "timestamp $t is refused (exit 1)" rc_is 1
  expect "  ... saying what it takes" err_has 'line 1: "timestamp" must be nanoseconds since the epoch or an ISO 8601 time with a zone'
done
input </dev/null

# --- the same filters on read, tail and replay ---------------------------------------------
run read "$L" --type Paid --category order-1
expect "read --type NAME --category" py 'len(out) > 0 and all(e["type"] == "Paid" and e["stream"] == "order-1" for e in out)'
n_paid=$(grep -c . "$TMP/out")
# Ids come in order of first use: Paid (i = 1) is 1, Shipped 2, Placed 3.
run read "$L" --type 1 --category order-1
expect "read --type takes a number too" out_lines "$n_paid"
run read "$L" --type Paid --type Shipped --stream order-1 --stream order-2
expect "read: repeated --type and --stream" py 'len(out) > 0 and all(e["type"] in ("Paid", "Shipped") and e["stream"] in ("order-1", "order-2") for e in out) and {e["stream"] for e in out} == {"order-1", "order-2"}'
run read "$L" --stream order-1 --type Shipped --limit 3
expect "read --stream with --type (the index path) counts what it prints" py 'len(out) == 3 and all(e["stream"] == "order-1" and e["type"] == "Shipped" for e in out)'
run read "$L" --category order- --stream cart-1
expect "read: --stream and --category add up (an event matches either)" py '{e["stream"] for e in out} == {"order-0", "order-1", "order-2", "order-3", "cart-1"}'
run tail "$L" --from-position 0 --type Placed --category cart- --limit 5
expect "tail --type NAME --category" py 'len(out) == 5 and all(e["type"] == "Placed" and e["stream"].startswith("cart-") for e in out)'
run replay "$L" --projection count-by-type --type Paid --type Shipped --category order- --json
expect "replay --type NAME (repeatable) --category" py 'set(out[0]["result"]) == {"Paid", "Shipped"}'
usage_case "read --from-version with two --stream" read "$L" --stream a --stream b --from-version 2
usage_case "read --category with --stream-u64" read "$L" --category a --stream-u64 1

# --- acks ------------------------------------------------------------------------------------
python3 -c '
for i in range(1, 501): print("{\"stream\":\"ack-%d\",\"type\":\"T\",\"data\":%d}" % (i % 5, i))' >"$TMP/in500"
cp "$TMP/in500" "$TMP/in"
run append "$L" --acks last
expect "--acks last prints one ack" out_lines 1
expect "  ... the last line's" py 'out[0]["stream"] == "ack-0" and out[0]["last_version"] == 100'
cp "$TMP/in500" "$TMP/in"
run append "$L" --acks none --durability group
expect "--acks none prints nothing, exit 0" rc_is 0
expect "  ... nothing at all" out_lines 0
cp "$TMP/in500" "$TMP/in"
run append "$L" --quiet
expect "--quiet is --acks none" out_lines 0
input </dev/null
run read "$L" --category ack-
expect "  ... and every line was appended each time" out_lines 1500
printf '%s\n' '{"stream":"ack-x","type":"T","data":1}' '{"stream":"ack-x","type":"T","data":2}' '{"stream":"ack-x","data":3}' >"$TMP/in"
run append "$L" --acks last
expect "--acks last, then a refused line: exit 1" rc_is 1
expect "  ... after the ack of the last line appended" py 'len(out) == 1 and out[0]["last_version"] == 2'
usage_case "--quiet with --acks every" append "$L" --quiet --acks every
usage_case "--acks sometimes" append "$L" --acks sometimes

# --- progress: on a terminal, never on a pipe --------------------------------------------------
cp "$TMP/in500" "$TMP/in"
run append "$L" --acks none
expect "no progress when stderr is not a terminal" test ! -s "$TMP/err"
# stderr on a pseudo-terminal; the input pauses past the 1 s a progress line waits for.
python3 - "$VARVE" "$L" "$TMP/in500" "$TMP/pty_err" "append" <<'PYEOF'
import os, pty, subprocess, sys, time
varve, log, src, dst, what = sys.argv[1:]
master, slave = pty.openpty()
if what == "append":
    p = subprocess.Popen([varve, "append", log, "--acks", "none"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=slave)
    lines = open(src, "rb").read()
    p.stdin.write(lines[:100]); p.stdin.flush(); time.sleep(1.3)
    p.stdin.write(lines[100:]); p.stdin.close()
else:
    p = subprocess.Popen([varve, "index", "rebuild", log], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave)
os.close(slave)
got = b""
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    got += chunk
p.wait()
open(dst, "wb").write(got + b"\nexit %d\n" % p.returncode)
PYEOF
cp "$TMP/pty_err" "$TMP/err"
expect "append shows progress on a terminal" err_has 'varve: append: [0-9]* lines, [0-9]* events, [0-9]* events/s'
expect "  ... and still exits 0" err_has '^exit 0'
python3 - "$VARVE" "$L" "" "$TMP/pty_err" "rebuild" <<'PYEOF'
import os, pty, subprocess, sys
varve, log, src, dst, what = sys.argv[1:]
master, slave = pty.openpty()
p = subprocess.Popen([varve, "index", "rebuild", log], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=slave)
os.close(slave)
got = b""
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    got += chunk
p.wait()
open(dst, "wb").write(got + b"\nexit %d\n" % p.returncode)
PYEOF
cp "$TMP/pty_err" "$TMP/err"
expect "index rebuild shows progress on a terminal" err_has 'varve: index rebuild: segment [0-9]* of [0-9]*'
expect "  ... and exits 0" err_has '^exit 0'
run index rebuild "$L"
expect "  ... but not on a pipe" test ! -s "$TMP/err"

# --- stat and index verify say what they checked -----------------------------------------------
run stat "$L" --json
expect "stat --json: intact, as far as the tail check sees" py 'out[0]["intact"] is True and out[0]["tail_events_checked"] > 0'
du_bytes=$(python3 -c '
import os, sys
t = 0
for root, dirs, files in os.walk(sys.argv[1]):
    for f in files: t += os.lstat(os.path.join(root, f)).st_blocks * 512
print(t)' "$L")
expect "stat: bytes on disk counts every file of the directory ($du_bytes)" py 'out[0]["bytes_on_disk"] == '"$du_bytes"' and out[0]["bytes_on_disk"] > out[0]["segments"] * out[0]["segment_bytes"]'
run stat "$TMP/damaged" --json
expect "stat --json of a truncated tail: not intact, exit 4" py 'out[0]["intact"] is False and "segment is 1000 bytes" in out[0]["problem"]'
run index verify "$L"
expect "index verify says it covers the sealed segments" grep -q '^index intact: the sealed segments 0-[0-9]*: [0-9]* index files .* head checkpoints' "$TMP/out"
expect "  ... and reports the unsealed tail" grep -q '^tail: [0-9]* events in segment [0-9]*, not indexed yet (indexed at seal)' "$TMP/out"
run index verify "$L" --json
expect "index verify --json: the tail too" py 'out[0]["intact"] and out[0]["tail"]["events"] > 0 and out[0]["tail"]["indexed"] is False and out[0]["tail"]["first_segment"] == out[0]["sealed_segments"]'
expect "  ... and its events with the index's are every event" python3 -c '
import json, subprocess, sys
j = json.load(open(sys.argv[1])); s = json.loads(subprocess.run([sys.argv[2], "stat", sys.argv[3], "--json"], capture_output=True).stdout)
sys.exit(0 if j["events"] + j["tail"]["events"] == s["events"] else 1)' "$TMP/out" "$VARVE" "$L"

# --- as of a version or a time ------------------------------------------------------------------
run read "$L" --stream order-1 --to-version 3
expect "read --stream --to-version 3: versions 1-3" py '[e["version"] for e in out] == [1, 2, 3]'
run read "$L" --stream order-1 --from-version 2 --to-version 3
expect "  ... from version 2: 2 and 3" py '[e["version"] for e in out] == [2, 3]'
run read "$L" --stream order-1 --from-version 5 --to-version 3
expect "  ... an empty range: nothing, exit 0" out_lines 0
run read "$L" --until 1700000000000000010
expect "read --until T: the log as of T (events stamped at or before it)" py '[e["timestamp"] for e in out] == [1700000000000000000 + i for i in range(1, 11)]'
run read "$L" --stream order-1 --until 2023-11-14T22:13:20.000000010Z
expect "read --stream --until (ISO 8601): the stream as of then" py '[e["data"]["i"] for e in out] == [1, 5]'
usage_case "--to-version without --stream" read "$L" --to-version 3
usage_case "--until with --backward" read "$L" --stream order-1 --backward --until 1700000000000000010
usage_case "--to-version with --until" read "$L" --stream order-1 --to-version 2 --until 1700000000000000010

# --- idempotent appends: a retried line with event ids is acknowledged again, not written ---------
I=$TMP/idem
input </dev/null
run create "$I"
printf '%s\n' '{"stream":"pay-1","type":"Paid","expected_version":"no_stream","event_id":"0a1b2c3d-0000-4000-8000-000000000001","data":{"eur":5}}' >"$TMP/line"
cp "$TMP/line" "$TMP/in"
run append "$I"
expect "append with an event_id: acked" py 'out == [{"stream": "pay-1", "first_version": 1, "last_version": 1, "position": 64}]'
run append "$I"
expect "  ... the same line again: the original ack, marked duplicate" py 'out == [{"stream": "pay-1", "first_version": 1, "last_version": 1, "position": 64, "duplicate": True}]'
sed 's/"eur":5/"eur":6/' "$TMP/line" >"$TMP/in"
run append "$I"
expect "  ... the same id with other content: a conflict (exit 3)" rc_is 3
expect "  ... naming the id" err_has 'event_id 0a1b2c3d-0000-4000-8000-000000000001 is already at version 1 with other content'
input </dev/null
run read "$I"
expect "  ... and the log holds the event once" out_lines 1

# --- multi-stream units of work: one line, several streams, all or nothing ----------------------
U=$TMP/units
input </dev/null
run create "$U"
printf '%s\n' '{"stream":"order-1","type":"Placed","expected_version":"no_stream","data":{"sku":"A"}}' >"$TMP/in"
run append "$U"
printf '%s\n' '{"streams":[{"stream":"order-1","expected_version":1,"events":[{"type":"Paid","data":{"eur":5}}]},{"stream":"stock-A","expected_version":"no_stream","events":[{"type":"Reserved","data":1},{"type":"Picked","data":1}]},{"stream":"cust-9","expected_version":"no_stream","events":[]}]}' >"$TMP/in"
run append "$U"
expect "append a multi-stream line: exit 0" rc_is 0
expect "  ... one ack with each stream's versions and the unit's range" py 'out == [{"streams": [{"stream": "order-1", "first_version": 2, "last_version": 2, "position": 160}, {"stream": "stock-A", "first_version": 1, "last_version": 2, "position": 248}, {"stream": "cust-9", "first_version": 0, "last_version": 0, "position": 408}], "position": 160, "end": 408}]'
printf '%s\n' '{"streams":[{"stream":"order-1","expected_version":2,"events":[{"type":"Shipped","data":1}]},{"stream":"stock-A","expected_version":1,"events":[{"type":"Picked","data":1}]}]}' >"$TMP/in"
run append "$U"
expect "  ... a stale version in one stream: exit 3" rc_is 3
expect "  ... naming that stream and its version" err_has "stream 'stock-A' (streams\[1\] of 2): expected version 1, actual version 2"
input </dev/null
run read "$U"
expect "  ... and nothing of that unit was written" out_lines 4
run read "$U" --stream stock-A
expect "  ... each stream reads its own events" py '[e["type"] for e in out] == ["Reserved", "Picked"]'
printf '%s\n' '{"streams":[{"stream":"x","events":[{"type":"T","data":1}]}],"stream":"y"}' >"$TMP/in"
run append "$U"
expect "multi-stream line with a stray key: exit 1, named" rc_is 1
expect "  ... naming the key" err_has '"stream" is not allowed on a multi-stream line'
printf '%s\n' '{"streams":[{"stream":"x","events":[{"type":"T","data":1}]},{"stream":"x","events":[]}]}' >"$TMP/in"
run append "$U"
expect "multi-stream line naming a stream twice: exit 1" rc_is 1
expect "  ... saying so" err_has "appears twice"

# --- metrics: the writer session's counters, from another process ---------------------------------
M=$TMP/metered
input </dev/null
run create "$M"
printf '%s\n' '{"stream":"a","type":"T","data":1}' '{"stream":"a","type":"T","data":2}' '{"stream":"b","type":"T","data":3}' >"$TMP/in"
run append "$M"
expect "metrics: a log with a finished append session" rc_is 0
input </dev/null
run metrics "$M"
expect "metrics: exit 0" rc_is 0
Mabs=$(cd "$M" && pwd)
expect "  ... labelled with the absolute directory, no writer open" grep -qxF "varve_writer_up{log=\"$Mabs\"} 0" "$TMP/out"
expect "  ... the last session's appended events" grep -qxF "varve_appended_events_total{log=\"$Mabs\"} 3" "$TMP/out"
expect "  ... the events in the log" grep -qxF "varve_events{log=\"$Mabs\"} 3" "$TMP/out"
expect "  ... a sync histogram ending in +Inf" grep -q "^varve_sync_duration_seconds_bucket{log=\"$Mabs\",le=\"+Inf\"} [0-9]*$" "$TMP/out"
expect "  ... every line a comment or a sample" python3 -c '
import re, sys
ok = all(l.startswith("# HELP ") or l.startswith("# TYPE ") or
         re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\} [0-9.e+-]+$|^[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\} \+?Inf$", l)
         for l in open(sys.argv[1]).read().splitlines())
sys.exit(0 if ok else 1)' "$TMP/out"
printf '%s\n' '{"stream":"a","type":"T","expected_version":7,"data":4}' >"$TMP/in"
run append "$M"
expect "metrics: a conflicting append (exit 3)" rc_is 3
input </dev/null
run metrics "$M" --json --label m
expect "metrics --json: the new session counted the conflict and appended nothing" py 'out[0]["session"]["append_conflicts"] == 1 and out[0]["session"]["append_events"] == 0 and out[0]["events"] == 3 and out[0]["session"]["writer_alive"] is False'
run metrics "$M" --output "$TMP/varve.prom" --label m
expect "metrics --output: writes the file, prints nothing" test -s "$TMP/varve.prom" -a ! -s "$TMP/out"
expect "  ... with the label given" grep -qxF 'varve_append_refusals_total{log="m",reason="wrong_expected_version"} 1' "$TMP/varve.prom"
expect "  ... and leaves no temporary file" test "$(ls "$TMP" | grep -c 'varve.prom.tmp')" -eq 0
run metrics "$M" --output "$TMP/no/such/dir/varve.prom"
expect "metrics --output into a missing directory: exit 1, named" rc_is 1
expect "  ... naming the file" err_has "$TMP/no/such/dir/varve.prom"
run stat "$M"
expect "stat: shows the writer and the session's counters" grep -q '^session        0 appends, 0 events, .*refused: 1 wrong expected version' "$TMP/out"
expect "  ... and the syncs" grep -q '^syncs          [0-9]* (0 failed)' "$TMP/out"
run stat "$M" --json
expect "stat --json: the session object" py 'out[0]["session"]["append_conflicts"] == 1 and len(out[0]["session"]["sync_latency_log2_us"]) == 24'

# --- crypto-shredding: keygen, --master-key, stream forget --------------------------
K=$TMP/master.key
E=$TMP/enc
run keygen "$K"
expect "keygen: writes a key file" test -s "$K"
run keygen "$K"
expect "keygen over an existing file: exit 6, the file kept" rc_is 6
input </dev/null
run create "$E" --segment-size 64K --master-key "$K"
expect "create --master-key: a log with per-stream keys" test -f "$E/keys" -a -f "$E/forgotten"
printf '%s\n' '{"stream":"alice","type":"T","data":{"email":"alice@example.org"}}' \
  '{"stream":"bob","type":"T","data":{"email":"bob@example.org"}}' \
  '{"stream":"alice","type":"T","data":{"email":"alice2@example.org"}}' >"$TMP/in"
run append "$E" --master-key "$K"
expect "append --master-key" rc_is 0
expect "  ... nothing of a payload on disk in clear" bash -c "! grep -rq 'example.org' '$E'"
input </dev/null
run append "$E"
expect "append without the key: refused, exit 2" rc_is 2
expect "  ... saying the log needs its master key" err_has "master key"
run read "$E" --master-key "$K"
expect "read --master-key: the payloads" py 'len(out) == 3 and out[0]["data"]["email"] == "alice@example.org"'
run read "$E"
expect "read without the key: an error naming the key" err_has "master key"
run read "$E" --master-key "$TMP/in"
expect "read with a file that is not a key: exit 2" rc_is 2
run stream forget "$E" alice
expect "stream forget without the key: exit 2" rc_is 2
run stream forget "$E" alice --master-key "$K" --json
expect "stream forget: one key destroyed, two events forgotten" py 'out[0]["keys_destroyed"] == 1 and out[0]["events_forgotten"] == 2 and out[0]["forget_sequence"] == 1'
VARVE_MASTER_KEY_FILE=$K run read "$E"
expect "read (VARVE_MASTER_KEY_FILE): alice's events forgotten, bob's whole" py 'len(out) == 3 and out[0].get("forgotten") is True and "data" not in out[0] and out[2].get("forgotten") is True and out[1]["data"]["email"] == "bob@example.org"'
run stream forget "$E" nobody --master-key "$K"
expect "stream forget of a missing stream: exit 5" rc_is 5
run stat "$E" --json
expect "stat --json: encrypted, one stream forgotten" py 'out[0]["encrypted"] is True and out[0]["forgotten_streams"] == 1'
run verify "$E"
expect "verify needs no key" rc_is 0

# --- stream lifecycle: delete, truncate, limits, meta, scavenge --------------------
L=$TMP/life
input </dev/null
run create "$L" --segment-size 64K
python3 -c '
import json
for i in range(400):
    print(json.dumps({"stream": "gone", "type": "T", "data": {"n": i, "pad": "x" * 800}}))
    print(json.dumps({"stream": "kept", "type": "T", "data": {"n": i}}))
' >"$TMP/in"
run append "$L"
expect "lifecycle: 800 events appended" rc_is 0
run stream delete "$L" gone --json
expect "stream delete: deleted" py 'out[0]["metadata"]["deleted"] is True'
run read "$L" --stream gone
expect "read --stream of a deleted stream: exit 5" rc_is 5
expect "  ... saying it was deleted" err_has "deleted"
run read "$L" --stream gone --json
expect "  ... --json: code stream_deleted, exit 5" err_json 'errs[0]["error"]["code"] == "stream_deleted" and errs[0]["error"]["exit"] == 5'
run read "$L"
expect "read: the deleted stream's events are hidden" py 'len(out) == 400 and all(e["stream"] == "kept" for e in out)'
printf '%s\n' '{"stream":"gone","type":"T","data":{}}' >"$TMP/in"
run append "$L"
expect "append to a deleted stream: refused" rc_nonzero
expect "  ... saying so" err_has "deleted"
run stream truncate "$L" kept --before 391
expect "stream truncate" rc_is 0
run read "$L" --stream kept
expect "read --stream after truncate: versions 391-400" py 'len(out) == 10 and out[0]["version"] == 391'
run stream truncate "$L" kept --before 10
expect "stream truncate backward: refused, exit 1" rc_is 1
run stream limits "$L" kept --max-count 3 --json
expect "stream limits --max-count" py 'out[0]["metadata"]["max_count"] == 3 and out[0]["metadata"]["truncate_before"] == 391'
run read "$L" --stream kept
expect "read --stream under max-count 3: the newest three" py '[e["version"] for e in out] == [398, 399, 400]'
run stream limits "$L" kept
expect "stream limits with no limit given: exit 2" rc_is 2
run stream meta "$L" --json
expect "stream meta: both streams, in change order" py 'len(out) == 2 and out[0]["stream"] == "gone" and out[1]["metadata"]["max_count"] == 3'
run stream meta "$L" nobody
expect "stream meta of a stream without metadata" out_has "no metadata"
run stat "$L" --json
expect "stat --json: one deleted, one limited" py 'out[0]["deleted_streams"] == 1 and out[0]["truncated_or_limited_streams"] == 1'
run scavenge "$L" --dry-run --json
expect "scavenge --dry-run: counts, frees nothing" py 'out[0]["events_removed"] > 0 and out[0]["bytes_freed"] == 0 and out[0]["dry_run"] is True'
run scavenge "$L" --json
expect "scavenge: hidden events removed, blocks freed" py 'out[0]["events_removed"] > 300 and out[0]["bytes_freed"] > 0'
run read "$L"
expect "read after scavenge: kept's newest, from the floor the scavenge recorded (the unsealed segment's stay)" py 'all(e["stream"] == "kept" for e in out) and 3 <= len(out) <= 10 and out[-1]["version"] == 400 and [e["version"] for e in out] == list(range(401 - len(out), 401))'
cp "$TMP/out" "$TMP/expected"
run stream meta "$L" kept --json
expect "  ... that floor is in DIR/streams" py 'out[0]["metadata"]["truncate_before"] == expected[0]["version"]'
run verify "$L"
expect "verify after scavenge" rc_is 0

summary
