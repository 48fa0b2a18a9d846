#!/usr/bin/env bash
# Smoke test of varve-bench (bench/varve_bench.cc): tiny sizes, every phase,
# every peer this build has, --json; then checks that every figure each peer
# should report is there and positive, that every ratio was computed, and that
# every peer read back exactly what it wrote (varve-bench exits non-zero on a
# mismatch; the JSON's verify records say what was compared).
# With "kafka" as the second argument it runs varve and the real Kafka broker
# (tools/kafka/broker) instead, P1-P7, and exits 77 (skipped) when no broker
# can be had here (varve-bench exits 2: Java or Maven missing), or fails under
# CI=true (tests/ci_skip.sh); without it, every peer but Kafka.
# Usage: varve_bench_smoke.sh path/to/varve-bench [kafka]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ci_skip.sh"
bench=${1:?usage: $0 path/to/varve-bench [kafka]}
mode=${2:-}
if [ "$mode" = kafka ]; then peer_args=(--peers varve,kafka); else peer_args=(--skip-peers kafka); fi
tmp=$(mktemp -d "${VARVE_BENCH_DIR:-/tmp}/varve-bench-smoke-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

rc=0
"$bench" "${peer_args[@]}" --events 20000 --aggregates 1000 --p3-events 20 --p5-aggregates 200 --p5-reps 1 \
         --writelog-p5-aggregates 2 --p6-events 5000 --p4-scans 1 --p7-events 1000 --p10-gib 0.05 \
         --dir "$tmp/data" --json "$tmp/bench.json" > "$tmp/table.txt" 2> "$tmp/log.txt" || rc=$?
if [ "$rc" = 2 ] && [ "$mode" = kafka ]; then
  varve_skip_or_fail_in_ci "varve-bench smoke: $(grep -m1 '^broker:' "$tmp/log.txt" || tail -1 "$tmp/log.txt")"
fi
[ "$rc" = 0 ] || { echo "varve-bench failed (exit $rc):" >&2; cat "$tmp/log.txt" >&2; exit 1; }
[ -z "$(ls -A "$tmp/data" 2>/dev/null)" ] || { echo "data directories left behind: $(ls "$tmp/data")" >&2; exit 1; }

# The standard library's json module (any python3 will do). Without python3
# (a minimal Debian has none; tools/install-deps.sh adds it) a coarser check,
# which CI does not settle for: there a missing python3 fails the test.
if ! command -v python3 >/dev/null; then
  if varve_in_ci; then
    echo "varve-bench smoke: FAIL: no python3 on PATH (CI=$CI; bash tools/install-deps.sh installs it)" >&2; exit 1
  fi
  j="$tmp/bench.json"
  for f in P1.events_per_s P2.events_per_s P3.p50_us P4.events_per_s P5.aggregates_per_s P6.p99.9_ns P7.p50_us P8.takeover_ms P9.trivial_1t_events_per_s P10.ceiling_MB_per_s; do
    grep -q "\"$f\"" "$j" || { echo "varve-bench smoke: FAIL: no $f in the JSON" >&2; exit 1; }
  done
  if grep -q '"ok": false' "$j"; then echo "varve-bench smoke: FAIL: a read-back check failed" >&2; exit 1; fi
  grep -q '"ok": true' "$j" || { echo "varve-bench smoke: FAIL: no read-back check recorded" >&2; exit 1; }
  echo "varve-bench smoke: ok (coarse check: no python3 on PATH)"
  exit 0
fi
python3 - "$tmp/bench.json" "$mode" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
kafka_mode = sys.argv[2] == "kafka"
fail = []
def need(cond, what):
    if not cond: fail.append(what)
for k in ("date", "machine", "config", "peers", "ratios"):
    need(k in j, "missing top-level " + k)
peers = j["config"]["peers"]
if kafka_mode:
    need(peers == ["varve", "kafka"], "peers: %s" % peers)
    need("broker" in j.get("kafka_options", {}), "Kafka's settings not written down")
else:
    need({"varve", "varve-group", "varve-sync", "writelog", "ceiling"} <= set(peers), "default peers: %s" % peers)
    need("kafka" not in peers, "--skip-peers kafka ran Kafka")
expected = {
    "varve":       ["P1.events_per_s", "P1.payload_MB_per_s", "P2.events_per_s", "P3.p50_us", "P3.p99_us",
                    "P3.max_us", "P4.events_per_s", "P4.payload_GB_per_s", "P5.aggregates_per_s", "P5.p50_us",
                    "P5.p99_us", "P6.p50_ns", "P6.p99_ns", "P6.p99.9_ns", "P6.max_ns", "P7.p50_us", "P7.p99_us",
                    "P7.p99.9_us", "P7.max_us", "P8.handoff_p50_us", "P8.handoff_p99_us", "P8.takeover_ms",
                    "P9.trivial_reader_events_per_s", "P9.trivial_1t_events_per_s", "P9.trivial_2t_events_per_s",
                    "P9.trivial_speedup_2t", "P9.work200_1t_events_per_s", "P9.work200_2t_events_per_s",
                    "P10.ceiling_MB_per_s", "P10.uring_MB_per_s", "P10.uring_direct_MB_per_s",
                    "P10.replay_uring_1t_MB_per_s", "P10.replay_uring_2t_MB_per_s",
                    "P10.replay_uring_1t_over_ceiling", "disk.bytes"],
    "varve-group": ["P2.events_per_s", "P3.p50_us", "P3.p99_us", "P3.max_us"],
    "varve-sync":  ["P3.p50_us", "P3.p99_us", "P3.max_us"],
    "writelog":    ["P1.events_per_s", "P2.events_per_s", "P3.p50_us", "P4.events_per_s", "P5.aggregates_per_s",
                    "P6.p99.9_ns", "disk.bytes"],
    "rocksdb":     ["P1.events_per_s", "P2.events_per_s", "P3.p50_us", "P4.events_per_s", "P5.aggregates_per_s",
                    "P5.p99_us", "P6.p99.9_ns", "disk.bytes"],
    "ceiling":     ["P1.events_per_s", "P3.p50_us", "P3.overwrite.p50_us", "P4.record_GB_per_s"],
    "kafka":       ["P1.events_per_s", "P2.events_per_s", "P3.p50_us", "P4.events_per_s", "P5.aggregates_per_s",
                    "P6.p50_ns", "P6.p99.9_ns", "P7.p50_us", "P7.p99_us", "P7.p99.9_us", "disk.bytes"],
}
for p in peers:
    pj = j["peers"].get(p)
    need(pj is not None, "no figures for peer " + p)
    if pj is None: continue
    for f in expected.get(p, []):
        v = pj["figures"].get(f)
        need(isinstance(v, (int, float)) and v > 0, "%s: %s = %r" % (p, f, v))
    need(pj["peak_rss_bytes"] > 0, p + ": peak RSS")
    ver = pj["verify"]
    need(len(ver) > 0, p + ": no read-back check recorded")
    for what, rec in ver.items():
        need(rec.get("ok") is True, "%s: read-back %s: %r" % (p, what, rec))
    if p not in ("ceiling", "varve-group", "varve-sync"):
        need("P1/P4 store" in ver and "P5" in ver, p + ": P4/P5 read-back checks missing")
        need(ver["P1/P4 store"]["events"] == j["config"]["events"], p + ": P4 count")
        need(ver["P5"]["mismatches"] == 0, p + ": P5 mismatches")
    if p in ("varve", "writelog", "rocksdb", "kafka"):
        need("P6.cdf" in pj["info"] and len(pj["info"]["P6.cdf"]["ns"]) > 10, p + ": P6 CDF")
    if p in ("varve", "kafka"):
        need(ver.get("P7 store", {}).get("events") == j["config"]["p7_events"], p + ": P7 read-back")
        need("P7.cdf" in pj["info"] and len(pj["info"]["P7.cdf"]["us"]) > 10, p + ": P7 CDF")
if "rocksdb" in peers:
    need(len(j.get("rocksdb_options", {})) >= 5, "RocksDB options not written down")
for r in j["ratios"]:
    need(r.get("varve_value", 0) > 0, "ratio %s: varve value" % r["what"])
    if "ratio" in r:
        need(r["ratio"] > 0, "ratio %s" % r["what"])
if kafka_mode:
    for ph in ("P1", "P2", "P3", "P4", "P5", "P6", "P7"):
        need(any(r["phase"] == ph and r.get("peer") == "kafka" and r.get("ratio", 0) > 0 for r in j["ratios"]),
             ph + " ratio varve/Kafka missing")
else:
    need(any(r["what"].startswith("P1 varve >= 2x") for r in j["ratios"]), "P1 ratio vs write(2) log missing")
    for ph in ("P9", "P10"):
        need(any(r["phase"] == ph and "met" in r for r in j["ratios"]), ph + " target row missing")
if fail:
    print("varve-bench smoke: FAIL\n  " + "\n  ".join(fail)); sys.exit(1)
print("varve-bench smoke: ok (%d peers, %d ratios)" % (len(peers), len(j["ratios"])))
PY

# --p7-follower-cpu: the follower on a CPU of its own (where there are two),
# and a CPU this process cannot use refused with a message.
if [ "$mode" != kafka ] && [ "$(nproc)" -ge 2 ]; then
  cpu=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status | sed 's/[-,].*//')
  "$bench" --peers varve --phases P7 --p7-follow spin --p7-events 1000 --p7-follower-cpu "$cpu" \
           --dir "$tmp/pin" --json "$tmp/pin.json" > /dev/null 2> "$tmp/pin.txt" ||
    { echo "varve-bench smoke: FAIL: P7 with --p7-follower-cpu $cpu:" >&2; cat "$tmp/pin.txt" >&2; exit 1; }
  python3 - "$tmp/pin.json" "$cpu" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
v = j["peers"]["varve"]
ok = v["figures"].get("P7.spin.p50_us", 0) > 0 and v["info"].get("P7.follower_cpu") == int(sys.argv[2]) \
     and j["config"]["p7_follower_cpu"] == int(sys.argv[2]) and v["verify"]["P7 store"]["ok"] is True
if not ok:
    print("varve-bench smoke: FAIL: pinned P7: %r %r" % (v["figures"], v["info"].get("P7.follower_cpu"))); sys.exit(1)
print("varve-bench smoke: pinned P7 ok (CPU %s)" % sys.argv[2])
PY
  if "$bench" --peers varve --phases P7 --p7-events 100 --p7-follower-cpu 1023 --dir "$tmp/pin" > /dev/null 2> "$tmp/bad.txt"; then
    echo "varve-bench smoke: FAIL: --p7-follower-cpu 1023 was accepted" >&2; exit 1
  fi
  grep -q -- "--p7-follower-cpu 1023: not one of this process's CPUs" "$tmp/bad.txt" ||
    { echo "varve-bench smoke: FAIL: no clear error for a CPU out of reach:" >&2; cat "$tmp/bad.txt" >&2; exit 1; }
  if "$bench" --peers varve --phases P7 --p7-events 100 --p7-follower-cpu -5 --dir "$tmp/pin" > /dev/null 2> "$tmp/bad.txt" ||
     ! grep -q -- "--p7-follower-cpu -5: a CPU number, or -1" "$tmp/bad.txt"; then
    echo "varve-bench smoke: FAIL: --p7-follower-cpu -5 not refused clearly:" >&2; cat "$tmp/bad.txt" >&2; exit 1
  fi
fi
