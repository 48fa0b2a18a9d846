"""The eventsourcing library's own performance test cases (test_performance
of the aggregate, application and process recorders; the application
recorder's test_concurrent_throughput) for varve's recorders beside the
library's file-backed SQLite and in-memory POPO recorders, in one run; then
two read figures the test cases lack: select_events of a 100-event aggregate
(an aggregate load) and select_notifications pages of 100 over 10,000
notifications (what a follower or a projection does).

    python bench/recorders.py [--reps 3]     (from outside python/, in the venv)

Prints each figure per recorder and rep, then the medians and varve's ratio
to SQLite. docs/BENCHMARKS.md quotes it."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import statistics
import tempfile
import unittest

from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder, POPOProcessRecorder
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteDatastore,
    SQLiteProcessRecorder,
)
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    ProcessRecorderTestCase,
)

from eventsourcing_varve import (
    VarveAggregateRecorder,
    VarveApplicationRecorder,
    VarveDatastore,
    VarveProcessRecorder,
)

TMP = tempfile.mkdtemp(prefix="varve-recorder-bench-")
_n = 0


def fresh(name: str) -> str:
    global _n
    _n += 1
    return os.path.join(TMP, f"{name}-{_n}")


# Each case makes a fresh log; with the default 64 MiB segments its first
# second goes to pre-faulting the segments ahead of the writer (a cost a
# long-lived log pays once), which on a 2-vCPU machine competes with the
# few milliseconds a case runs. 8 MiB segments keep that out of the figures.
SEGMENT_BYTES = int(os.environ.get("VARVE_SEGMENT_BYTES", 8 << 20))


def varve(cls):
    durability = os.environ.get("VARVE_DURABILITY", "group")
    return lambda self: cls(VarveDatastore.acquire(fresh("varve"), durability, SEGMENT_BYTES))


def sqlite(cls):
    def make(self):
        r = cls(SQLiteDatastore(db_name=fresh("sqlite") + ".db"))
        r.create_table()
        return r
    return make


def popo(cls):
    return lambda self: cls()


KINDS = {
    "aggregate insert": (AggregateRecorderTestCase, "test_performance",
                         {"varve": varve(VarveAggregateRecorder), "sqlite": sqlite(SQLiteAggregateRecorder),
                          "popo": popo(POPOAggregateRecorder)}),
    "application insert": (ApplicationRecorderTestCase, "test_performance",
                           {"varve": varve(VarveApplicationRecorder), "sqlite": sqlite(SQLiteApplicationRecorder),
                            "popo": popo(POPOApplicationRecorder)}),
    "process insert": (ProcessRecorderTestCase, "test_performance",
                       {"varve": varve(VarveProcessRecorder), "sqlite": sqlite(SQLiteProcessRecorder),
                        "popo": popo(POPOProcessRecorder)}),
    "concurrent throughput": (ApplicationRecorderTestCase, "test_concurrent_throughput",
                              {"varve": varve(VarveApplicationRecorder),
                               "sqlite": sqlite(SQLiteApplicationRecorder),
                               "popo": popo(POPOApplicationRecorder)}),
}


def run_one(base, method, make) -> float:
    case_cls = type("Case", (base,), {"create_recorder": make, "runTest": lambda self: None})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = unittest.TestResult()
        case_cls(method).run(result)
    if result.errors or result.failures:
        raise RuntimeError((result.errors + result.failures)[0][1])
    text = out.getvalue()
    m = re.search(r"(\d+) inserts per second", text)
    if m is None:
        raise RuntimeError(f"no figure in {text!r}")
    return float(m.group(1))


def select_figures(name: str, make) -> dict[str, float]:
    """Events selected per second: select_events of 100-event aggregates and
    select_notifications in pages of 100 over 10,000 notifications."""
    import time
    from uuid import uuid4

    from eventsourcing.persistence import StoredEvent

    rec = make(None)
    ids = [uuid4() for _ in range(100)]
    for oid in ids:  # 100 aggregates of 100 events, inserted one aggregate per call
        rec.insert_events([StoredEvent(oid, v, "topic1", b'{"amount": 10, "note": "x"}')
                           for v in range(1, 101)])
    t0 = time.perf_counter()
    n = 0
    for oid in ids:
        n += len(rec.select_events(oid))
    t1 = time.perf_counter()
    start, m = 1, 0
    while True:
        page = rec.select_notifications(start, 100)
        if not page:
            break
        m += len(page)
        start = page[-1].id + 1
    t2 = time.perf_counter()
    assert n == 10_000 and m == 10_000, (n, m)
    return {"select_events": n / (t1 - t0), "select_notifications": m / (t2 - t1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rows = {}
    for rep in range(args.reps):
        for kind, (base, method, makers) in KINDS.items():
            for name, make in makers.items():  # interleaved: each rep runs every recorder
                v = run_one(base, method, make)
                rows.setdefault((kind, name), []).append(v)
                print(f"rep {rep + 1} {kind:22s} {name:6s} {v:10.0f} inserts/s", flush=True)
    print()
    print(f"{'test case':22s} {'varve':>10s} {'sqlite':>10s} {'popo':>10s} {'varve/sqlite':>13s}")
    for kind in KINDS:
        med = {n: statistics.median(rows[(kind, n)]) for n in ("varve", "sqlite", "popo")}
        print(f"{kind:22s} {med['varve']:10.0f} {med['sqlite']:10.0f} {med['popo']:10.0f} "
              f"{med['varve'] / med['sqlite']:12.2f}x")
    print()
    sel: dict[tuple[str, str], list[float]] = {}
    makers = KINDS["application insert"][2]
    for rep in range(args.reps):
        for name, make in makers.items():
            for k, v in select_figures(name, make).items():
                sel.setdefault((k, name), []).append(v)
                print(f"rep {rep + 1} {k:22s} {name:6s} {v:10.0f} events/s", flush=True)
    print()
    print(f"{'read':22s} {'varve':>10s} {'sqlite':>10s} {'popo':>10s} {'varve/sqlite':>13s}")
    for k in ("select_events", "select_notifications"):
        med = {n: statistics.median(sel[(k, n)]) for n in ("varve", "sqlite", "popo")}
        print(f"{k:22s} {med['varve']:10.0f} {med['sqlite']:10.0f} {med['popo']:10.0f} "
              f"{med['varve'] / med['sqlite']:12.2f}x")
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
