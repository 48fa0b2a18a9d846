#!/bin/bash
# Scavenge on two layouts of 400,000 JSON events (~230 B each) over 1,000 streams, half of the
# streams deleted: A interleaved one event at a time, B written in runs of 64 per stream.
set -e
V=${VARVE:-build-rel/varve}  # the Release CLI
T=/tmp/scavb; rm -rf $T; mkdir -p $T
gen() {  # $1 = run length
python3 - "$1" <<'PY'
import json, sys
run = int(sys.argv[1]); n = 400000; streams = 1000
out = sys.stdout
i = 0
while i < n:
    for s in range(streams):
        for k in range(run):
            if i >= n: break
            out.write(json.dumps({"stream": "account-%d" % s, "type": "Deposited",
                                  "data": {"amount": i % 997, "currency": "EUR", "reference": "ref-%012d" % i,
                                           "note": "monthly transfer from the savings account, batch %d" % (i // 1000)}}) + "\n")
            i += 1
        if i >= n: break
PY
}
for layout in A:1 B:64; do
  name=${layout%%:*}; run=${layout##*:}
  L=$T/$name
  $V create $L --segment-size 8M </dev/null >/dev/null
  gen $run > $T/in.ndjson
  $V append $L --acks none < $T/in.ndjson >/dev/null
  before=$(du -sB1 $L | cut -f1)
  for s in $(seq 0 2 999); do echo "account-$s"; done > $T/del
  t0=$(date +%s.%N)
  while read s; do $V stream delete $L $s >/dev/null; done < $T/del
  t1=$(date +%s.%N)
  $V scavenge $L --json > $T/scav.json
  t2=$(date +%s.%N)
  after=$(du -sB1 $L | cut -f1)
  $V verify $L >/dev/null
  echo "layout $name (runs of $run): du before $before, after $after; 500 deletes $(echo "$t1 - $t0" | bc) s (one CLI process each); scavenge $(echo "$t2 - $t1" | bc) s: $(cat $T/scav.json)"
done
