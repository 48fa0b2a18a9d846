#!/usr/bin/env bash
# `varve ship` through real network faults, checked by kafka_consume (every
# event of the log once, byte for byte with its headers, each stream in
# version order). The broker advertises a TCP proxy (tcp_proxy.cc), so every
# connection of the shipper goes through it, and while a writer keeps
# appending, at random moments:
#   - the broker freezes (SIGSTOP) for 2-5 s, and once for 11-12 s (past the
#     shipper's 10 s socket timeout): its connections stay open, silent;
#   - the proxy resets (RST) every connection;
#   - the proxy refuses connections for 1-2.5 s (and resets the open ones);
#   - the network goes silent (the proxy forwards and accepts nothing) for 2-5 s;
#   - every open connection goes silent for good (dropped), new ones work:
#     only the shipper's socket timeout gets it out (10 s for each of its two
#     connections, the partition leader's and the transaction coordinator's).
# The shipper must ride all of it out by itself: after each fault it must be
# shipping again within 30 s (with librdkafka's default 60 s socket timeout
# the dropped connections stall it for a minute), and at the end the topic
# holds the whole log, once. Then:
#   - an unreachable broker (refused, or silent) at start: exit 1 naming the
#     address, after --connect-timeout, not later;
#   - Ctrl-C of a shipper whose broker froze with a transaction in flight:
#     exit 0 within a few seconds; a new shipper then completes the topic,
#     still every event once.
# Exit 77 (CTest: skipped) with the broker script's reason where Java or Maven
# is missing; under CI=true that fails instead (tests/ci_skip.sh).
# VARVE_KAFKA_SEED=N replays a run's fault schedule (printed).
# Usage: kafka_netfault_test.sh VARVE KAFKA_CONSUME BROKER_SCRIPT TCP_PROXY
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ci_skip.sh"
varve=$1
consume=$2
broker=$3
proxy=$4
seed=${VARVE_KAFKA_SEED:-$((RANDOM * 32768 + RANDOM))}

work=$(mktemp -d /tmp/varve-netfault-test.XXXXXX)
kdir=$work/kafka
log=$work/log
pids=()
proxies=()
proxy_pids=()
bpid=
cleanup() {
  local rc=$?
  touch "$work/writer.stop"
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # A frozen broker would not hear the SIGTERM of `broker stop`.
  [[ -z $bpid ]] || kill -CONT "$bpid" 2>/dev/null || true
  "$broker" stop "$kdir" >/dev/null 2>&1 || true
  for fd in "${proxies[@]}"; do exec {fd}>&-; done  # a proxy exits at EOF
  for p in "${proxy_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ $rc -ne 0 && $rc -ne 77 ]]; then
    echo "--- kept $work for a look (broker log: $kdir/server.log, shipper: $work/ship.err)" >&2
  else
    [[ -n ${VARVE_KAFKA_KEEP:-} ]] || rm -rf "$work"
  fi
}
trap cleanup EXIT

t0=$SECONDS
say() { echo "[$((SECONDS - t0))s] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# A proxy NAME, driven through a FIFO: start_proxy NAME sets NAME_port and
# NAME_fd; pcmd NAME COMMAND waits for its "ok COMMAND".
start_proxy() {
  local name=$1 fd port
  mkfifo "$work/$name.in"
  "$proxy" <"$work/$name.in" >"$work/$name.out" 2>"$work/$name.err" &
  proxy_pids+=("$!")
  exec {fd}>"$work/$name.in"
  proxies+=("$fd")
  for _ in $(seq 100); do [[ -s $work/$name.out ]] && break; sleep 0.05; done
  port=$(head -1 "$work/$name.out")
  [[ $port =~ ^[0-9]+$ ]] || fail "the proxy did not start: $(cat "$work/$name.err")"
  printf -v "${name}_port" %s "$port"
  printf -v "${name}_fd" %s "$fd"
}
pcmd() {
  local name=$1 n fdvar
  shift
  fdvar=${name}_fd
  n=$(grep -c '^ok ' "$work/$name.out" || true)
  echo "$*" >&"${!fdvar}"
  for _ in $(seq 250); do
    (($(grep -c '^ok ' "$work/$name.out" || true) > n)) && return 0
    sleep 0.02
  done
  fail "the proxy did not take \"$*\""
}

source "$(dirname "${BASH_SOURCE[0]}")/kafka_events.sh"  # gen (as in kafka_ship_test.sh)

gen 10000 0 2000 1 | "$varve" append "$log" --create --segment-size 8M >"$work/acks"
say "appended 10000 events"

# The broker advertises the proxy; the proxy forwards to the broker's own
# port, known as soon as the broker process runs.
start_proxy net
via=127.0.0.1:$net_port
VARVE_KAFKA_ADVERTISE_PORT=$net_port "$broker" start "$kdir" >"$work/broker.addr" 2>"$work/broker.err" &
bstart=$!
pids+=("$bstart")
st=
while ! st=$("$broker" status "$kdir" 2>/dev/null); do
  kill -0 "$bstart" 2>/dev/null || break
  sleep 0.2
done
if [[ $st == running* ]]; then
  read -r _ addr _ bpid <<<"$st"
  pcmd net target "$addr"

  # 1. Meanwhile: an unreachable broker at start is a bounded wait, then
  # exit 1 naming the address (a second proxy that refuses, then answers nothing).
  start_proxy dead
  unreachable() {  # $1: what the address does
    local t rc=0 ms
    t=$(now_ms)
    "$varve" ship "$log" --brokers "127.0.0.1:$dead_port" --topic events --stop-at-end --connect-timeout 3 \
      >/dev/null 2>"$work/unreachable.err" || rc=$?
    ms=$(($(now_ms) - t))
    [[ $rc -eq 1 ]] || fail "ship to an address that $1: exit $rc, not 1 ($(cat "$work/unreachable.err"))"
    grep -q "127.0.0.1:$dead_port" "$work/unreachable.err" ||
      fail "ship to an address that $1: the message does not name it: $(cat "$work/unreachable.err")"
    ((ms >= 2500 && ms <= 8000)) || fail "ship to an address that $1, --connect-timeout 3: gave up after $ms ms"
    say "unreachable ($1): exit 1 after $ms ms: $(cat "$work/unreachable.err")"
  }
  pcmd dead refuse
  unreachable "refuses connections"
  pcmd dead accept  # and, with no target, never answers
  unreachable "never answers"
fi
set +e
wait "$bstart"
rc=$?
set -e
if [[ $rc -eq 2 ]]; then
  varve_skip_or_fail_in_ci "$(tail -1 "$work/broker.err")"
fi
[[ $rc -eq 0 && -n $bpid ]] || { cat "$work/broker.err" >&2; fail "the broker did not start"; }
say "broker at $addr (pid $bpid), advertised through the proxy at $via; seed $seed"
"$broker" topic "$kdir" events 8

# 2. A shipper through the proxy, a writer appending in bursts, and faults.
"$varve" ship "$log" --brokers "$via" --topic events --from-beginning --json >"$work/ship.json" 2>"$work/ship.err" &
ship=$!
pids+=("$ship")
(
  b=0
  while [[ ! -e $work/writer.stop ]]; do
    gen 300 $((100000 + b * 300)) 2000 $((b + 7))
    b=$((b + 1))
    sleep 0.4
  done
) | "$varve" append "$log" >>"$work/acks" &
writer=$!
pids+=("$writer")

# The position of the last append, and the last one the shipper committed
# (from complete lines only).
appended() { tail -1 "$work/acks" | sed -n 's/.*"position":\([0-9]*\)}$/\1/p'; }
shipped() { tail -1 "$work/ship.json" | grep '}$' | sed -n 's/^{"position":\([0-9]*\),.*/\1/p'; }
# After a fault is over: how long until what the writer appends next is in
# Kafka (the shipper got going again by itself), at most 30 s.
recovered() {
  local want got t ms
  t=$(now_ms)
  want=$(appended)
  # From the writer's next burst on (what was there before may have been
  # shipped before the fault).
  for _ in $(seq 40); do [[ $(appended) != "$want" ]] && break; sleep 0.05; done
  want=$(appended)
  for (( ; ; )); do
    got=$(shipped)
    [[ -n $want && -n $got ]] && ((got >= want)) && break
    kill -0 "$ship" 2>/dev/null || { tail -20 "$work/ship.err" >&2; fail "the shipper exited after: $1"; }
    ms=$(($(now_ms) - t))
    ((ms <= 30000)) || { tail -20 "$work/ship.err" >&2; fail "the shipper did not get going within 30 s after: $1"; }
    sleep 0.1
  done
  ms=$(($(now_ms) - t))
  say "  $1: shipping again, the next append in Kafka $ms ms later"
}
for _ in $(seq 300); do [[ -n $(shipped) ]] && break; sleep 0.2; done
[[ -n $(shipped) ]] || { cat "$work/ship.err" >&2; fail "the shipper shipped nothing in 60 s"; }

RANDOM=$((seed % 32768))
rnd() { echo "$(($1 + RANDOM % ($2 - $1 + 1)))"; }  # an integer in [$1, $2]
# The schedule, shuffled: every kind but the slow drop more than once, and one
# broker freeze longer than the shipper's socket timeout (10 s) for sure.
# VARVE_KAFKA_ROUNDS=N runs N such schedules; VARVE_KAFKA_FAULTS="drop reset
# ..." runs those faults instead.
faults=()
for _ in $(seq "${VARVE_KAFKA_ROUNDS:-1}"); do
  faults+=(freeze freeze freeze-long reset reset reset refuse refuse silent silent drop)
done
[[ -z ${VARVE_KAFKA_FAULTS:-} ]] || read -r -a faults <<<"$VARVE_KAFKA_FAULTS"
for ((i = ${#faults[@]} - 1; i > 0; i--)); do
  j=$((RANDOM % (i + 1)))
  tmp=${faults[i]}
  faults[i]=${faults[j]}
  faults[j]=$tmp
done
for f in "${faults[@]}"; do
  sleep "$(rnd 0 6)e-1"
  case $f in
    freeze | freeze-long)
      if [[ $f == freeze ]]; then d=$(rnd 20 50); else d=$(rnd 110 120); fi
      what="broker frozen (SIGSTOP) for ${d}00 ms"
      kill -STOP "$bpid"
      sleep "${d}e-1"
      kill -CONT "$bpid"
      ;;
    reset)
      what="every connection reset"
      pcmd net reset
      ;;
    refuse)
      d=$(rnd 10 25)
      what="connections refused for ${d}00 ms"
      pcmd net refuse
      sleep "${d}e-1"
      pcmd net accept
      ;;
    silent)
      d=$(rnd 20 50)
      what="silent network for ${d}00 ms"
      pcmd net freeze
      sleep "${d}e-1"
      pcmd net thaw
      ;;
    drop)
      what="every open connection silent for good"
      pcmd net drop
      ;;
  esac
  recovered "$what"
done
touch "$work/writer.stop"
wait "$writer" || fail "the writer failed"
say "faults done, writer stopped ($(grep -c 'starting over' "$work/ship.err" || true) restarts of the shipper's session)"

# The shipper caught up by itself: the whole log, once.
"$consume" "$addr" events "$log" --wait 60 || { tail -20 "$work/ship.err" >&2; fail "after the network faults"; }
say "checked"

# 3. Ctrl-C while the broker is frozen, to the shipper with a transaction in
# flight and to one still connecting: both out in seconds (not the
# transaction timeout), exit 0; the open transaction is the next shipper's to
# abort.
kill -STOP "$bpid"
gen 5000 900000 2000 99 | "$varve" append "$log" >/dev/null
"$varve" ship "$log" --brokers "$via" --topic events 2>"$work/ship-late.err" &
late=$!
pids+=("$late")
sleep 1.5  # produced, and waiting on the commit; waiting on init_transactions
t=$(now_ms)
kill -INT "$ship" "$late"
declare -A gone=()
for _ in $(seq 100); do
  for p in ship late; do
    [[ -z ${gone[$p]:-} ]] && ! kill -0 "${!p}" 2>/dev/null && gone[$p]=$(($(now_ms) - t))
  done
  [[ -n ${gone[ship]:-} && -n ${gone[late]:-} ]] && break
  sleep 0.1
done
for p in ship late; do
  if [[ -z ${gone[$p]:-} ]]; then
    kill -CONT "$bpid"
    fail "the $p shipper did not exit within 10 s of SIGINT while the broker was frozen"
  fi
  rc=0
  wait "${!p}" || rc=$?
  [[ $rc -eq 0 ]] || { kill -CONT "$bpid"; tail -5 "$work/$p.err" "$work/ship-$p.err" >&2 2>/dev/null; fail "the $p shipper exited $rc on SIGINT, not 0"; }
done
kill -CONT "$bpid"
say "SIGINT with the broker frozen: exit 0 after ${gone[ship]} ms (in a transaction), ${gone[late]} ms (connecting)"
((gone[ship] <= 5000 && gone[late] <= 5000)) || fail "more than 5 s to exit on SIGINT"

"$varve" ship "$log" --brokers "$via" --topic events --stop-at-end 2>"$work/ship-end.err" ||
  { cat "$work/ship-end.err" >&2; fail "the last shipper failed"; }
"$consume" "$addr" events "$log" --wait 60 || fail "after SIGINT with the broker frozen"
say "PASS"
