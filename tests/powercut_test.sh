#!/usr/bin/env bash
# Power cuts through the real kernel write-back path (issue 15): `varve append`
# runs on powercut_fs (tests/tools/powercut_fs.cc, a FUSE file system that
# keeps only what was fsync'd or msync'd), the power is cut at a random moment,
# and every event the CLI acknowledged before the cut must be in the image.
# Each round mounts the previous round's image (after a simulated reboot:
# a new VARVE_BOOT_ID), so recovery after a power loss is exercised too, and
# the image is first read by a read-only `varve read` before any writer
# opened it (it must find the true end itself).
#
#   powercut_test.sh VARVE POWERCUT_FS
#   VARVE_POWERCUT_ROUNDS (default 12), VARVE_POWERCUT_SEED (default 1; "random"),
#   VARVE_POWERCUT_MODES (default "group sync none"; none only checks nothing breaks)
# Exit 77 (skipped) where FUSE cannot be mounted, unless CI=true (then 1: tests/ci_skip.sh).
set -uo pipefail
varve=$1
pcfs=$2
rounds=${VARVE_POWERCUT_ROUNDS:-12}
seed=${VARVE_POWERCUT_SEED:-1}
[[ $seed == random ]] && seed=$(( (RANDOM << 15) | RANDOM ))
echo "powercut: seed $seed, $rounds rounds (VARVE_POWERCUT_SEED=$seed to replay)"

source "$(dirname "$0")/ci_skip.sh"
skip() { varve_skip_or_fail_in_ci "powercut: $*"; }
[[ -c /dev/fuse ]] || skip "/dev/fuse is missing"
command -v fusermount3 >/dev/null || skip "fusermount3 is missing (apt-get install fuse3)"
command -v python3 >/dev/null || skip "python3 is missing"

work=$(mktemp -d /tmp/varve-powercut-XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
fs_pid=
cleanup() {
  [[ -n $fs_pid ]] && kill -9 "$fs_pid" 2>/dev/null
  fusermount3 -u -z "$mnt" 2>/dev/null
  if [[ ${VARVE_KEEP_TEST_DIRS:-} != 1 ]]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

cat > "$work/gen.py" <<'EOF'
# NDJSON appends in small bursts, so acks go out often (the CLI acks a chunk
# when its input runs dry), to a few streams, payloads of 0..400 bytes.
import random, sys, time
r = random.Random(int(sys.argv[1]))
out = sys.stdout
try:
    for i in range(10_000_000):
        s = "acct-%d" % r.randrange(40)
        out.write('{"stream":"%s","type":"E","data":{"i":%d,"pad":"%s"}}\n' % (s, i, "x" * r.randrange(400)))
        if r.random() < 0.05:
            out.flush()
            time.sleep(r.random() * 0.002)
except BrokenPipeError:
    pass
EOF

cat > "$work/check.py" <<'EOF'
# Every acknowledged line (stream, first_version .. last_version, position) is
# in the NDJSON the log reads back, at that position.
import json, sys
have = {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    have[(e["stream"], e["version"])] = e["position"]
acked = lost = 0
for line in open(sys.argv[2]):
    try:
        a = json.loads(line)
    except ValueError:
        continue  # a line cut by the kill: never acknowledged
    acked += 1
    if have.get((a["stream"], a["first_version"])) != a["position"]:
        lost += 1
        if lost <= 5 and sys.argv[3] != "none": print("LOST", line.strip(), file=sys.stderr)
print(acked, lost)
EOF

uuid() { python3 -c "import uuid,random; random.seed($1); print(uuid.UUID(int=random.getrandbits(128)))"; }
rand() { python3 -c "import random; random.seed($1); print($2)"; }

modes=(${VARVE_POWERCUT_MODES:-group sync none})
prev=
total_acked=0
for ((round = 1; round <= rounds; round++)); do
  mode=${modes[$(( (round - 1) % ${#modes[@]} ))]}
  s=$((seed * 1000 + round))
  img=$work/img$round
  if [[ -n $prev ]]; then "$pcfs" "$mnt" --dump "$img" --load "$prev" -f -s & else "$pcfs" "$mnt" --dump "$img" -f -s & fi
  fs_pid=$!
  for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
  mountpoint -q "$mnt" || skip "cannot mount powercut_fs (FUSE not permitted here?)"
  export VARVE_BOOT_ID=$(uuid "$s")  # every round starts after a (simulated) reboot
  if [[ ! -e $mnt/log/varve.meta ]]; then
    "$varve" create "$mnt/log" --segment-size "$( ((round % 2)) && echo 1M || echo 64K)" >/dev/null ||
      { echo "powercut: create failed" >&2; exit 1; }
  fi
  python3 "$work/gen.py" "$s" | "$varve" append "$mnt/log" --durability "$mode" >"$work/acks" 2>"$work/append.err" &
  app_pid=$!
  sleep "$(rand "$s" "0.3 + random.random() * 1.2")"
  printf x >"$mnt/.crash"   # the power goes: the image is what was durable
  kill -9 "$app_pid" 2>/dev/null
  wait "$app_pid" 2>/dev/null
  fusermount3 -u -z "$mnt"
  wait "$fs_pid" 2>/dev/null
  fs_pid=
  [[ -d $img/log ]] || { echo "powercut: round $round: no image was dumped" >&2; exit 1; }
  export VARVE_BOOT_ID=$(uuid "$((s + 7))")  # after the cut: another boot
  # A reader first, before any writer recovered the log.
  rm -rf "$work/chk"
  cp -r "$img/log" "$work/chk"
  if ! "$varve" read "$work/chk" >"$work/read-before" 2>"$work/read-before.err"; then
    echo "powercut: round $round ($mode): read-only read of the image failed:" >&2
    cat "$work/read-before.err" >&2
    exit 1
  fi
  read -r acked lost_ro < <(python3 "$work/check.py" "$work/read-before" "$work/acks" "$mode")
  # Then a writer's recovery, and the same check.
  if ! "$varve" append "$work/chk" </dev/null >/dev/null 2>"$work/recover.err"; then
    echo "powercut: round $round ($mode): the writer refused the image:" >&2
    cat "$work/recover.err" >&2
    exit 1
  fi
  "$varve" read "$work/chk" >"$work/read-after" 2>&1 || { echo "powercut: read failed" >&2; exit 1; }
  read -r _ lost_rw < <(python3 "$work/check.py" "$work/read-after" "$work/acks" "$mode")
  echo "powercut: round $round ($mode): $acked acknowledged, lost: $lost_ro before recovery, $lost_rw after"
  if [[ $mode != none && ( $lost_ro != 0 || $lost_rw != 0 ) ]]; then
    echo "powercut: FAIL: acknowledged events were lost (seed $seed, round $round, mode $mode)" >&2
    cat "$work/append.err" >&2
    exit 1
  fi
  [[ $mode != none ]] && total_acked=$((total_acked + acked))
  prev=$img
  [[ $round -gt 2 ]] && rm -rf "$work/img$((round - 2))"
done
if ((total_acked == 0)); then
  echo "powercut: FAIL: nothing was acknowledged in any durable round: the test checked nothing" >&2
  exit 1
fi
echo "powercut: ok, $total_acked acknowledged events checked"
