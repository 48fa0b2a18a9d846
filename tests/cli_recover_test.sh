#!/usr/bin/env bash
# Issue 15 as an operator meets it, through the CLI: a log written with every
# acknowledgement durable, then damaged (a flipped byte in the active segment,
# an overwritten header, a missing first or newest segment). Before, a plain
# `varve append` silently zeroed acknowledged events and handed their versions
# out again. Now every case ends in a refusal that names the file and offset
# (exit 4), readers and verify tell the truth, and `varve recover` repairs
# explicitly, keeping every byte it takes out in DIR/lost+found/.
#   cli_recover_test.sh path/to/varve
VARVE=$1
source "$(dirname "$0")/cli_lib.sh"

# 1,500 events, every ack durable, in 64 KiB segments: a few sealed segments
# and an active one.
make_log() {
  rm -rf "$1"
  "$VARVE" create "$1" --segment-size 64K >/dev/null || return 1
  python3 -c '
for i in range(1500):
    print("{\"stream\":\"acct-%d\",\"type\":\"Deposited\",\"data\":{\"i\":%d,\"pad\":\"%s\"}}" % (i % 37, i, "x" * (i % 50)))
' | "$VARVE" append "$1" --durability sync >"$TMP/acks" || return 1
}
newest_seg() { ls "$1"/*.seg | sort | tail -1; }
dir_sum() { (cd "$1" && find . -type f ! -name varve.lock -print0 | sort -z | xargs -0 sha256sum) | sha256sum; }
echo -n >"$TMP/in"

make_log "$TMP/log"
expect "the log was written (1,500 acks)" [ "$(grep -c . "$TMP/acks")" -eq 1500 ]
cp -r "$TMP/log" "$TMP/pristine"

# --- a flipped byte inside the active segment's durable records ---------------
seg=$(newest_seg "$TMP/log")
printf '\xff' | dd of="$seg" bs=1 seek=5000 conv=notrunc 2>/dev/null
before=$(dir_sum "$TMP/log")
echo '{"stream":"acct-1","type":"Deposited","data":{}}' >"$TMP/in"
run append "$TMP/log"
expect "append refuses a log with a damaged durable record (exit 4)" rc_is 4
expect "  ... naming the file" err_has "$(basename "$seg")"
damaged_at=$(grep -Eo 'offset [0-9]+' "$TMP/err" | head -1 | cut -d' ' -f2)
near_5000() { [ -n "$damaged_at" ] && [ "$damaged_at" -le 5000 ] && [ "$damaged_at" -gt 4000 ]; }
expect "  ... and the offset of the damaged record (the flip was at 5000)" near_5000
expect "  ... and pointing at varve recover" err_has "varve recover"
expect "  ... and changes nothing" [ "$(dir_sum "$TMP/log")" = "$before" ]
echo -n >"$TMP/in"
run verify "$TMP/log"
expect "verify does not say intact (exit 4)" rc_is 4
run read "$TMP/log"
expect "read stops at the damage with exit 4" rc_is 4
n_before_damage=$(grep -c . "$TMP/out")
expect "  ... after every event before it" [ "$n_before_damage" -gt 1000 ]
run recover "$TMP/log" --dry-run
expect "recover --dry-run exits 0" rc_is 0
expect "  ... names what it found" err_has "$(basename "$seg")"
expect "  ... and changes nothing" [ "$(dir_sum "$TMP/log")" = "$before" ]
run recover "$TMP/log"
expect "recover (point in time) exits 0" rc_is 0
expect "  ... reports every action on stderr" err_has "lost+found"
expect "  ... keeps the cut bytes in lost+found/" [ -n "$(ls "$TMP/log/lost+found" | grep '\.seg\.at-')" ]
expect "  ... with a REPORT" [ -s "$TMP/log/lost+found/REPORT" ]
run read "$TMP/log"
expect "the repaired log reads (exit 0)" rc_is 0
n_after=$(grep -c . "$TMP/out")
expect "  ... every event before the damaged batch is there" [ "$n_after" -ge "$((n_before_damage - 3))" ]
python3 - "$TMP/out" "$TMP/acks" "$TMP/log/lost+found" <<'EOF' && ok "  ... and every acknowledged event is either in the log or byte for byte in lost+found" || not_ok "every acknowledged event is in the log or in lost+found"
import json, os, sys
have = {(e["stream"], e["version"]) for e in map(json.loads, open(sys.argv[1]))}
kept = b"".join(open(os.path.join(sys.argv[3], f), "rb").read() for f in os.listdir(sys.argv[3]) if ".seg.at-" in f)
missing = 0
for line in open(sys.argv[2]):
    a = json.loads(line)
    if (a["stream"], a["first_version"]) in have: continue
    # Not in the log: its record (stream id bytes and payload) must be in the kept bytes.
    if a["stream"].encode() not in kept: missing += 1
sys.exit(1 if missing else 0)
EOF
echo '{"stream":"acct-1","type":"Deposited","data":{}}' >"$TMP/in"
run append "$TMP/log"
expect "appends work again after the repair" rc_is 0
echo -n >"$TMP/in"
run verify "$TMP/log"
expect "  ... and verify says intact" rc_is 0

# --- skip-damaged keeps the events after the damage -------------------------------
rm -rf "$TMP/log2"; cp -r "$TMP/pristine" "$TMP/log2"
printf '\xff' | dd of="$(newest_seg "$TMP/log2")" bs=1 seek=5000 conv=notrunc 2>/dev/null
run recover "$TMP/log2" --mode skip-damaged
expect "recover --mode skip-damaged exits 0" rc_is 0
run read "$TMP/log2"
expect "  ... and keeps all but the damaged batch" [ "$(grep -c . "$TMP/out")" -eq 1499 ]
run verify "$TMP/log2"
expect "  ... and verify says intact" rc_is 0

# --- the active segment's header overwritten -----------------------------------------
rm -rf "$TMP/log3"; cp -r "$TMP/pristine" "$TMP/log3"
printf 'garbage!' | dd of="$(newest_seg "$TMP/log3")" bs=1 seek=0 conv=notrunc 2>/dev/null
echo '{"stream":"acct-1","type":"Deposited","data":{}}' >"$TMP/in"
run append "$TMP/log3"
expect "append refuses a damaged header of a segment that holds data (exit 4)" rc_is 4
expect "  ... instead of setting the segment aside" [ "$(ls "$TMP/log3" | grep -c damaged)" -eq 0 ]
echo -n >"$TMP/in"
run recover "$TMP/log3"
expect "recover rebuilds the header (exit 0)" rc_is 0
run read "$TMP/log3"
expect "  ... and no event is lost" [ "$(grep -c . "$TMP/out")" -eq 1500 ]

# --- a missing oldest segment, a missing newest segment ------------------------------
rm -rf "$TMP/log4"; cp -r "$TMP/pristine" "$TMP/log4"
rm "$TMP/log4/00000000000000000000.seg"
echo '{"stream":"acct-1","type":"Deposited","data":{}}' >"$TMP/in"
run append "$TMP/log4"
expect "append refuses a log whose first segment is missing (exit 4)" rc_is 4
expect "  ... naming it" err_has "00000000000000000000.seg"
expect "  ... without restarting the sequence" [ ! -e "$TMP/log4/00000000000000000000.seg" ]

rm -rf "$TMP/log5"; cp -r "$TMP/pristine" "$TMP/log5"
rm "$(newest_seg "$TMP/log5")"
run append "$TMP/log5"
expect "append refuses a log whose newest segment is missing (exit 4)" rc_is 4
expect "  ... saying varve.ctl's position lies in it" err_has "varve.ctl"
echo -n >"$TMP/in"
run stat "$TMP/log5"
expect "stat does not call it fine" rc_nonzero
run read "$TMP/log5"
expect "read does not show a shorter log with exit 0" rc_nonzero

# --- after a power cut: torn bytes past the durable end are cut, said and kept ---------
rm -rf "$TMP/log6"; cp -r "$TMP/pristine" "$TMP/log6"
seg=$(newest_seg "$TMP/log6")
# Garbage past the end of the log, as a power loss can leave in never-synced pages.
size=$(stat -c %s "$seg")
printf 'torn page garbage' | dd of="$seg" bs=1 seek=$((size - 4096)) conv=notrunc 2>/dev/null
echo '{"stream":"acct-1","type":"Deposited","data":{}}' >"$TMP/in"
VARVE_BOOT_ID=00000000-0000-0000-0000-00000000abcd run append "$TMP/log6"
expect "after a (simulated) reboot, append recovers a torn tail (exit 0)" rc_is 0
expect "  ... saying so on stderr" err_has "cut"
expect "  ... and keeping the bytes" [ -n "$(ls "$TMP/log6/lost+found" 2>/dev/null | grep '\.seg\.at-')" ]

summary
