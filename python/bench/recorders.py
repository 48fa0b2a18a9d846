"""The eventsourcing library's own performance test cases (test_performance
of the aggregate, application and process recorders; the application
recorder's test_concurrent_throughput) for varve's recorders beside the
library's file-backed SQLite and in-memory POPO recorders, in one run.

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


def varve(cls):
    durability = os.environ.get("VARVE_DURABILITY", "group")
    return lambda self: cls(VarveDatastore.acquire(fresh("varve"), durability))


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
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
