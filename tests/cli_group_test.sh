#!/usr/bin/env bash
# Consumer groups through the CLI (issue 22): `varve consume` creates the group,
# prints owned events as NDJSON, commits after each line and resumes there;
# SIGTERM leaves cleanly (exit 0); two members split the log with no event
# twice; a partition count other than the group's is a conflict (exit 3);
# `varve group ls|describe|reset|delete`, a live member refusing reset and
# delete (exit 3), and a damaged group file reported with file and offset (4).
#   cli_group_test.sh path/to/varve
VARVE=$1
source "$(dirname "$0")/cli_lib.sh"

L="$TMP/log"
"$VARVE" create "$L" >/dev/null || exit 1
python3 -c '
for i in range(200):
    print("{\"stream\":\"acct-%d\",\"type\":\"Deposited\",\"data\":{\"i\":%d}}" % (i % 13, i))
' | "$VARVE" append "$L" >/dev/null || exit 1
echo -n >"$TMP/in"

run consume "$L" --group billing --partitions 4 --limit 50
expect "consume prints --limit events and exits 0" rc_is 0
expect "  ... 50 NDJSON lines" out_lines 50
expect "  ... in log order, from the beginning" py 'all(e["sequence"] == i for i, e in enumerate(out))'
expect "  ... the group file was created" [ -f "$L/groups/billing.group" ]

"$VARVE" consume "$L" --group billing --limit 1000 --session-timeout 1 </dev/null >"$TMP/out" 2>"$TMP/err" &
pid=$!
sleep 2
kill -TERM $pid
wait $pid
rc=$?
expect "SIGTERM leaves the group with exit 0" rc_is 0
expect "  ... after the 150 events not yet committed, none again" py 'len(out) == 150 and out[0]["sequence"] == 50'

run group describe "$L" billing --json
expect "group describe --json exits 0" rc_is 0
expect "  ... no live member after the clean leave" py 'all(not m["alive"] for m in out[0]["members"])'
expect "  ... 4 partitions, every one committed at the end (lag 0)" \
  py 'len(out[0]["slots"]) == 4 and all(s["lag_bytes"] == 0 for s in out[0]["slots"])'

run consume "$L" --group billing --partitions 8 --limit 1 --json
expect "another partition count is a conflict (exit 3)" rc_is 3
expect "  ... naming the group file" err_has "billing.group"
expect "  ... as a JSON error" err_has '"code":"conflict"'

usage_case "a group name with a slash" consume "$L" --group "a/b"

# Two members: together every event once (a clean rebalance repeats nothing).
"$VARVE" group reset "$L" billing 2>"$TMP/err"
rc=$?
expect "group reset with no member exits 0" rc_is 0
"$VARVE" consume "$L" --group billing --session-timeout 1 >"$TMP/a" 2>"$TMP/a.err" &
pa=$!
"$VARVE" consume "$L" --group billing --session-timeout 1 >"$TMP/b" 2>"$TMP/b.err" &
pb=$!
sleep 2.5
run group reset "$L" billing
expect "reset while members are alive is a conflict (exit 3)" rc_is 3
run group delete "$L" billing
expect "delete while members are alive is a conflict (exit 3)" rc_is 3
run group ls "$L" --json
expect "group ls --json shows the two live members" py 'out == [{"group": "billing", "partitions": 4, "members": 2, "max_lag_bytes": 0, "lag_events": 0}]'
kill -TERM $pa $pb
wait $pa; ra=$?
wait $pb; rb=$?
expect "both members exit 0 on SIGTERM" [ "$ra" -eq 0 ] && [ "$rb" -eq 0 ]
cat "$TMP/a" "$TMP/b" >"$TMP/out"
expect "  ... and printed the 200 events exactly once between them" \
  py 'sorted(e["sequence"] for e in out) == list(range(200))'
expect "  ... each stream in version order within a member" python3 - "$TMP/a" "$TMP/b" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    last = {}
    for line in open(path):
        e = json.loads(line)
        if last.get(e["stream"], 0) >= e["version"]:
            sys.exit(1)
        last[e["stream"]] = e["version"]
EOF

run group describe "$L" nosuch
expect "describe of a group that does not exist: exit 5" rc_is 5

# Dead letters: entries of $dlq-billing as nack() writes them (here by hand,
# naming events 5 and 9), listed and replayed; replay keeps progress by name.
dead_letter() {  # dead_letter SEQUENCE ERROR: one entry for the event with that sequence number
  "$VARVE" read "$L" --limit 200 | python3 -c '
import json, sys
seq, err = int(sys.argv[1]), sys.argv[2]
for line in sys.stdin:
    e = json.loads(line)
    if e["sequence"] == seq:
        d = {"group": "billing", "partition": 0, "position": e["position"], "sequence": seq,
             "stream": e["stream"], "type": 1, "attempts": 3, "error": err}
        print(json.dumps({"stream": "$dlq-billing", "type": "varve.dead_letter", "data": d}))
' "$1" "$2" | "$VARVE" append "$L" >/dev/null
}
dead_letter 5 'no "rate" for EUR'
dead_letter 9 'timeout'
run group dead-letters "$L" billing --json
expect "group dead-letters --json: one line per dead letter" py 'len(out) == 2 and [d["dead_letter_version"] for d in out] == [1, 2] and out[0]["dead_letter"]["error"] == "no \"rate\" for EUR"'
run group dead-letters "$L" billing
expect "  ... and as text, with the error" grep -q '^1 .*attempts 3 .*stream acct-5  error: no "rate" for EUR$' "$TMP/out"
run group replay "$L" billing
expect "group replay prints the events that failed, in consume's format" py '[e["sequence"] for e in out] == [5, 9] and out[0]["stream"] == "acct-5" and out[0]["data"] == {"i": 5}'
expect "  ... each with its dead letter" py 'out[1]["dead_letter"]["error"] == "timeout" and out[1]["dead_letter_version"] == 2'
run group replay "$L" billing --from-version 2
expect "replay --from-version 2: the second only" py '[e["sequence"] for e in out] == [9]'
run group replay "$L" billing --name fix-1 --limit 1
expect "replay --name --limit 1: the first" py '[e["sequence"] for e in out] == [5]'
run group replay "$L" billing --name fix-1
expect "  ... the same name again: only what it has not printed" py '[e["sequence"] for e in out] == [9]'
run group replay "$L" billing --name fix-1
expect "  ... and then nothing" out_lines 0
dead_letter 11 'later'
run group replay "$L" billing --name fix-1
expect "  ... until a new dead letter arrives" py '[e["sequence"] for e in out] == [11]'
run group dead-letters "$L" nosuch
expect "dead-letters of a group that does not exist: exit 5" rc_is 5
printf '%s\n' '{"stream":"$dlq-billing","type":"varve.dead_letter","data":{"group":"billing","position":3,"type":1}}' | "$VARVE" append "$L" >/dev/null
run group replay "$L" billing --name fix-1
expect "an entry naming no event: exit 4" rc_is 4
expect "  ... naming the entry" err_has 'dead letter $dlq-billing version 4'

# Damage: the header's checksum fails; reported, never reset.
cp "$L/groups/billing.group" "$TMP/saved.group"
printf '\x07' | dd of="$L/groups/billing.group" bs=1 seek=20 conv=notrunc 2>/dev/null
run group describe "$L" billing --json
expect "a damaged group file: exit 4" rc_is 4
expect "  ... naming the file and the offset" err_has '"offset":56'
run consume "$L" --group billing --limit 1
expect "  ... consume refuses it too (exit 4)" rc_is 4
expect "  ... and leaves it as it was" [ "$(cmp -l "$L/groups/billing.group" "$TMP/saved.group" | wc -l)" -eq 1 ]

run group delete "$L" billing
expect "delete removes even a damaged group (exit 0)" rc_is 0
expect "  ... the file is gone" [ ! -e "$L/groups/billing.group" ]
run group delete "$L" billing
expect "delete of a missing group: exit 5" rc_is 5

summary
