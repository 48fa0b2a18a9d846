"""The varve binding: appends, reads, conflicts, units of work, metadata,
subscriptions across threads and processes, damaged files reported by
name and offset, crypto-shredding and stream lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

import varve
from varve import EventData


@pytest.fixture()
def log(tmp_path):
    lg = varve.EventLog.create(str(tmp_path / "log"), durability="group", segment_bytes=1 << 20)
    yield lg
    lg.close()


def test_append_and_read_back(log):
    r = log.append("order-1", [EventData("Placed", b'{"n":1}', json=True), EventData("Paid", b"x")],
                   expected=varve.NO_STREAM)
    assert (r.first_sequence, r.first_version, r.last_version, r.duplicate) == (0, 1, 2, False)
    log.wait_durable(r.end)
    assert log.durable >= r.end
    assert log.version_of("order-1") == 2 and log.version_of("nope") == 0
    events = list(log.read())
    assert [(e.stream, e.version, e.type, e.data, e.json) for e in events] == [
        ("order-1", 1, "Placed", b'{"n":1}', True), ("order-1", 2, "Paid", b"x", False)]
    assert events[0].batch_begin and events[1].batch_end and events[1].position == events[0].end
    assert [e.version for e in log.read_stream("order-1", backward=True)] == [2, 1]
    assert [e.version for e in log.read_stream("order-1", 2)] == [2]
    assert log.position_of(1) == events[1].position and log.position_of(2) == log.committed


def test_stream_ids_of_every_kind(log):
    log.append(42, EventData(7, b"int id"))
    log.append(b"\xff\x00raw", EventData("T", b"bytes id"))
    by = {e.data: e for e in log.read()}
    assert by[b"int id"].stream == 42 and by[b"int id"].type_id == 7 and by[b"int id"].type is None
    assert by[b"bytes id"].stream == b"\xff\x00raw"
    with pytest.raises(ValueError):
        log.append("", EventData("T", b""))
    with pytest.raises(TypeError):
        log.append(1.5, EventData("T", b""))


def test_conflict_names_the_stream_and_its_version(log):
    log.append("s", EventData("T", b"1"))
    with pytest.raises(varve.WrongExpectedVersion) as info:
        log.append("s", EventData("T", b"2"), expected=0)
    assert info.value.actual_version == 1 and info.value.stream == "s"
    assert "'s'" in str(info.value)
    log.append("s", EventData("T", b"2"), expected=1)
    assert log.version_of("s") == 2


def test_idempotent_retry_is_reported_as_a_duplicate(log):
    eid = uuid.uuid4()
    first = log.append("s", EventData("T", b"1", event_id=eid), expected=varve.NO_STREAM)
    again = log.append("s", EventData("T", b"1", event_id=eid), expected=varve.NO_STREAM)
    assert again.duplicate and again.first == first.first
    assert log.next_sequence == 1


def test_metadata_and_ids_round_trip(log):
    corr = uuid.uuid4()
    log.append("s", EventData("T", b"p", metadata={"user": "ada", "trace": b"\x01\x02"},
                              correlation_id=corr, causation_id=corr.bytes, timestamp_ns=123))
    e = next(iter(log.read()))
    assert e.metadata == {"user": b"ada", "trace": b"\x01\x02"}
    assert e.correlation_id == corr.bytes and e.causation_id == corr.bytes and e.event_id is None
    assert e.timestamp_ns == 123
    assert [x.data for x in log.read(correlation_ids=[corr])] == [b"p"]
    with pytest.raises(varve.InvalidArgument):
        log.append("s", EventData("T", b"p", metadata={"varve.reserved": "x"}))


def test_multi_stream_unit_of_work_is_all_or_nothing(log):
    log.append("a", EventData("T", b"a1"))
    with pytest.raises(varve.WrongExpectedVersion) as info:
        log.append_multi([("b", varve.NO_STREAM, [EventData("T", b"b1")]),
                          ("a", 0, [EventData("T", b"a2")])])
    assert info.value.actual_version == 1 and "'a'" in str(info.value)
    assert log.version_of("b") == 0 and log.next_sequence == 1
    r = log.append_multi([("b", varve.NO_STREAM, [EventData("T", b"b1")]),
                          ("a", 1, [EventData("T", b"a2"), EventData("T", b"a3")])])
    assert r["events"] == 3 and r["first_sequence"] == 1
    assert [(s.first_version, s.last_version) for s in r["streams"]] == [(1, 1), (2, 3)]
    seen = list(log.read(r["first"]))
    assert seen[0].batch_begin and seen[-1].batch_end and not seen[1].batch_begin


def test_filters_and_limits(log):
    for i in range(10):
        log.append(f"cat-{i % 2}", EventData("Even" if i % 2 == 0 else "Odd", str(i).encode()))
    assert [e.data for e in log.read(types=["Odd"])] == [b"1", b"3", b"5", b"7", b"9"]
    assert [e.data for e in log.read(streams=["cat-0"], limit=2)] == [b"0", b"2"]
    assert len(list(log.read(prefixes=["cat-"]))) == 10
    assert list(log.read(types=["NeverRegistered"])) == []


def test_subscription_follows_appends_from_another_thread(log):
    sub = log.subscribe(0)
    got: list[bytes] = []

    def consume():
        for e in sub:
            got.append(e.data)
            if len(got) == 100:
                break

    t = threading.Thread(target=consume)
    t.start()
    for i in range(100):
        log.append("s", EventData("T", str(i).encode()))
    t.join(timeout=20)
    assert not t.is_alive()
    assert got == [str(i).encode() for i in range(100)]
    # A waiting iteration ends when cancelled from another thread.
    done = threading.Event()

    def wait_forever():
        for _ in sub:
            pass
        done.set()

    t = threading.Thread(target=wait_forever)
    t.start()
    sub.cancel()
    t.join(timeout=10)
    assert done.is_set()


def test_a_subscription_reading_ahead_keeps_where_and_lag_exact(log):
    # Events are read ahead in batches: `where` and `lag` still count the
    # ones not handed out yet, and cancel() stops the hand-out at once.
    for i in range(200):
        log.append(f"s-{i % 5}", EventData("T", str(i).encode()))
    sub = log.subscribe(0)
    got = [sub.next(timeout=5) for _ in range(10)]
    assert [e.data for e in got] == [str(i).encode() for i in range(10)]
    assert sub.where == got[-1].end
    assert sub.lag == (190, log.committed - got[-1].end)
    again = log.subscribe(sub.where)  # resuming at `where` continues exactly
    assert again.next(timeout=5).data == b"10"
    rest = [sub.next(timeout=5) for _ in range(190)]
    assert [e.data for e in rest] == [str(i).encode() for i in range(10, 200)]
    assert sub.next(timeout=0.01) is None and sub.where == log.committed and sub.lag == (0, 0)
    filtered = log.subscribe(0, streams=["s-3"])
    f = [filtered.next(timeout=5) for _ in range(3)]
    assert [e.data for e in f] == [b"3", b"8", b"13"]
    assert filtered.where == f[-1].end
    again.cancel()
    with pytest.raises(varve.CancelledError):
        again.next(timeout=1)
    assert list(again) == []


def test_a_reader_in_another_process_follows_the_writer(log):
    script = (
        "import sys, varve\n"
        "ro = varve.EventLog.open_read_only(sys.argv[1])\n"
        "sub = ro.subscribe(0)\n"
        "print('ready', flush=True)\n"
        "for e in sub:\n"
        "    print(e.data.decode(), flush=True)\n"
        "    if e.data == b'last': break\n"
    )
    # (cwd: not the source tree, whose varve/ lacks the built extension)
    p = subprocess.Popen([sys.executable, "-c", script, log.dir], stdout=subprocess.PIPE, text=True,
                         cwd=os.path.dirname(log.dir))
    assert p.stdout.readline().strip() == "ready"
    for i in range(5):
        log.append("s", EventData("T", str(i).encode()))
    log.append("s", EventData("T", b"last"))
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0
    assert out.split() == ["0", "1", "2", "3", "4", "last"]


def test_a_second_writer_is_locked_out(log):
    with pytest.raises(varve.LockedError):
        varve.EventLog.open(log.dir)


def test_a_damaged_record_is_refused_naming_file_and_offset(tmp_path):
    d = str(tmp_path / "log")
    with varve.EventLog.create(d, segment_bytes=1 << 20) as lg:
        r = lg.append("s", [EventData("T", b"A" * 100) for _ in range(3)])
        lg.flush()
    seg = sorted(f for f in os.listdir(d) if f.endswith(".seg"))[0]
    path = os.path.join(d, seg)
    with open(path, "r+b") as f:  # flip a payload byte of the second event
        f.seek(r.first + 200)
        b = f.read(1)
        f.seek(r.first + 200)
        f.write(bytes([b[0] ^ 0xFF]))
    ro = varve.EventLog.open_read_only(d)
    with pytest.raises(varve.CorruptionError) as info:
        list(ro.read())
    assert seg in str(info.value) and "offset" in str(info.value)
    ro.close()


def test_a_reader_reading_ahead_keeps_where_exact_and_stops_at_damage(tmp_path):
    # The reader reads events ahead in batches: `where` still says just past
    # the last event handed out, every event before a damaged record comes
    # out, then its error (again on the next call), the cursor on it.
    d = str(tmp_path / "log")
    with varve.EventLog.create(d, segment_bytes=1 << 20) as lg:
        for i in range(200):
            lg.append(f"s-{i % 7}", EventData(7 if i % 2 else "Named", bytes([i]) * (20 + i % 50)))
        good = list(lg.read())
        lg.flush()
    assert [(e.type, e.type_id) for e in good[:2]] == [("Named", good[0].type_id), (None, 7)]
    victim = good[150]
    seg = sorted(f for f in os.listdir(d) if f.endswith(".seg"))[0]
    with open(os.path.join(d, seg), "r+b") as f:  # a payload byte of event 150
        f.seek(victim.position + victim.record_bytes - 9)
        b = f.read(1)
        f.seek(victim.position + victim.record_bytes - 9)
        f.write(bytes([b[0] ^ 0xFF]))
    with varve.EventLog.open_read_only(d) as ro:
        it = ro.read()
        got = [next(it) for _ in range(10)]
        assert it.where == got[-1].end
        with pytest.raises(varve.CorruptionError) as info:
            for e in it:
                got.append(e)
                assert it.where == e.end
        assert [(e.sequence, e.data) for e in got] == [(e.sequence, e.data) for e in good[:150]]
        assert seg in str(info.value) and f"offset {victim.position}" in str(info.value)
        assert it.where == victim.position
        with pytest.raises(varve.CorruptionError):
            next(it)
        assert [e.sequence for e in ro.read(limit=3)] == [0, 1, 2]


def test_threads_sharing_one_reader_get_each_event_once_in_order(log):
    n = 20000
    for i in range(0, n, 100):
        log.append(f"s-{i % 13}", [EventData(7, str(i + k).encode()) for k in range(100)])
    it = log.read()
    seen = [[] for _ in range(4)]

    def drain(k):
        for e in it:
            seen[k].append(e.sequence)

    threads = [threading.Thread(target=drain, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(q for s in seen for q in s) == list(range(n))
    assert all(s == sorted(s) for s in seen)
    assert it.where == log.committed


def test_errors_for_missing_and_closed_logs(tmp_path):
    with pytest.raises(varve.NotFoundError):
        varve.EventLog.open(str(tmp_path / "absent"))
    lg = varve.EventLog.create(str(tmp_path / "log"), segment_bytes=1 << 20)
    lg.close()
    with pytest.raises(ValueError):
        lg.append("s", EventData("T", b""))


def test_threads_append_concurrently_with_expected_versions(log):
    # Eight threads race for one stream with exact expected versions (the
    # binding serialises the writer's calls; the GIL is released while they
    # run): every version is written once, the losers see the actual version.
    wins: list[int] = []
    conflicts = 0
    lock = threading.Lock()

    def worker(k: int) -> None:
        nonlocal conflicts
        for _ in range(200):
            v = log.version_of("hot")
            try:
                r = log.append("hot", EventData("T", f"{k}".encode()), expected=v)
                with lock:
                    wins.append(r.first_version)
            except varve.WrongExpectedVersion as e:
                assert e.actual_version > v
                with lock:
                    conflicts += 1
            log.append(f"own-{k}", EventData("T", b"x"))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == list(range(1, len(wins) + 1))
    assert len(wins) + conflicts == 8 * 200
    assert log.version_of("hot") == len(wins)
    assert all(log.version_of(f"own-{k}") == 200 for k in range(8))
    assert [e.version for e in log.read_stream("hot")] == list(range(1, len(wins) + 1))


def test_upcasters_from_a_json_file(tmp_path):
    d = str(tmp_path / "log")
    with varve.EventLog.create(d, segment_bytes=1 << 20) as lg:
        lg.append("cart", EventData("ItemAdded", b'{"qty":2,"legacy":1}', json=True))
    up = tmp_path / "up.json"
    up.write_text('{"upcasters":[{"type":"ItemAdded","from":1,"rename":{"qty":"quantity"},'
                  '"drop":["legacy"]}]}')
    with varve.EventLog.open(d, upcasters=str(up)) as lg:
        e = next(iter(lg.read_stream("cart")))
        assert (e.data, e.schema_version, e.stored_schema_version) == (b'{"quantity":2}', 2, 1)
        with pytest.raises(varve.InvalidArgument):  # newer than the type's current version
            lg.append("cart", EventData("ItemAdded", b"{}", json=True, schema_version=3))
    up.write_text('{"upcasters":[{"type":"ItemAdded","from":1},{"type":"ItemAdded","from":3}]}')
    with pytest.raises(varve.InvalidArgument) as info:
        varve.EventLog.open(d, upcasters=str(up))
    assert "none from version 2" in str(info.value)


def test_a_named_subscription_resumes_where_it_committed(log):
    for i in range(10):
        log.append("s", EventData("T", str(i).encode()))
    sub = log.subscribe(0, name="projector")
    seen = [sub.next(timeout=1) for _ in range(4)]
    sub.ack(seen[-1].end)
    sub.commit()
    sub.cancel()
    again = log.subscribe(0, name="projector")
    assert again.next(timeout=1).data == b"4"
    with pytest.raises(varve.InvalidArgument):
        log.subscribe(0).ack(0)  # unnamed


def test_read_only_log_refuses_appends_and_follows(log):
    ro = varve.EventLog.open_read_only(log.dir)
    assert ro.read_only
    log.append("s", EventData("T", b"1"))
    assert [e.data for e in ro.read()] == [b"1"]
    assert ro.version_of("s") == 1
    with pytest.raises(varve.ReadOnlyError):
        ro.append("s", EventData("T", b"2"))
    ro.close()


def test_rows_of_the_callers_own_type(log):
    from collections import namedtuple

    Row = namedtuple("Row", "owner version seq type data v note")
    for i in range(1, 6):
        log.append("s", EventData("T", f"p{i}".encode(), metadata={"v": str(10 * i)}))
    rows = log.read_stream_rows("s", Row, ["version", "sequence", "type", "data", "meta_int:v", "meta:absent"],
                                2, prefix=("me",), limit=3)
    assert rows == [Row("me", 2, 1, "T", b"p2", 20, None), Row("me", 3, 2, "T", b"p3", 30, None),
                    Row("me", 4, 3, "T", b"p4", 40, None)]
    back = log.read_stream_rows("s", lambda *a: a, ["version"], backward=True)
    assert back == [(5,), (4,), (3,), (2,), (1,)]

    class Plain:
        def __init__(self) -> None:
            raise AssertionError("not called")

    made = log.read_stream_rows("s", Plain, ["version", "data"], 5, prefix=("me",),
                                names=("owner", "version", "data"))
    assert len(made) == 1 and vars(made[0]) == {"owner": "me", "version": 5, "data": b"p5"}
    with pytest.raises(ValueError):
        log.read_stream_rows("s", Plain, ["version"], names=("a", "b"))
    with pytest.raises(ValueError):
        log.read_stream_rows("s", tuple, ["no-such-field"])
    log.append("t", EventData("T", b"", metadata={"v": "not a number"}))
    with pytest.raises(ValueError):
        log.read_stream_rows("t", lambda *a: a, ["meta_int:v"])
    assert log.read_stream_rows("absent", tuple, ["version"]) == []


def test_read_rows_filters_stops_and_resumes(log):
    ids = [uuid.uuid4() for _ in range(3)]
    for i in range(12):
        t = "Skip" if i % 4 == 3 else ("A" if i % 2 == 0 else "B")
        log.append(str(ids[i % 3]), EventData(t, str(i).encode(), metadata={"n": str(i)}))
    mk = lambda *a: a  # noqa: E731
    rows, resume, nxt = log.read_rows(0, mk, ["number", "stream_uuid", "meta_int:n", "data"], limit=4,
                                      exclude_types=["Skip"])
    assert [r[0] for r in rows] == [1, 2, 3, 5]
    assert rows[0][1] == ids[0] and rows[1][1] == ids[1] and rows[3][2] == 4
    assert nxt == 5 and resume == log.position_of(5)
    rows, resume, nxt = log.read_rows(resume, mk, ["number"], limit=100, types=["A"], until_sequence=9)
    assert [r[0] for r in rows] == [7, 9]  # numbers of A events with sequence <= 9 after #5
    assert nxt == 10
    rows, _, nxt = log.read_rows(0, mk, ["number"], limit=10, types=["NotRegistered"])
    assert rows == [] and nxt is None


def test_retention_moves_the_start_and_reads_below_it_raise(tmp_path):
    lg = varve.EventLog.create(str(tmp_path / "ret"), segment_bytes=1 << 16)
    pad = b"x" * 400
    n = 0
    while lg.committed < 6 << 16:
        lg.append("s-%d" % (n % 3), EventData("T", pad))
        n += 1
    lg.close()
    lg = varve.EventLog.open(str(tmp_path / "ret"))
    dry = lg.retain(before=(3 << 16) + 64, dry_run=True)
    assert dry["segments_removed"] == 3 and lg.stats()["start_position"] == 0
    r = lg.retain(before=(3 << 16) + 64)
    assert r["segments_removed"] == 3 and r["start_position"] == (3 << 16) + 64
    assert lg.stats()["start_position"] == r["start_position"]
    events = list(lg.read())
    assert events[0].position == r["start_position"] and events[0].sequence == r["first_sequence"]
    assert len(events) == n - r["events_removed"]
    with pytest.raises(varve.RemovedError) as e:
        list(lg.read(64))
    assert "starts at position %d" % r["start_position"] in str(e.value)
    assert isinstance(e.value, varve.NotFoundError) and e.value.code == "removed"
    with pytest.raises(varve.RemovedError):
        list(lg.read_stream("s-1"))
    with pytest.raises(varve.RemovedError):
        lg.position_of(0)
    assert lg.retain()["segments_removed"] == 0  # no limit: nothing goes
    lg.close()


def test_archive_moves_sealed_segments_and_reads_reach_them(tmp_path):
    path = str(tmp_path / "arc")
    lg = varve.EventLog.create(path, segment_bytes=1 << 16)
    n = 0
    while lg.committed < 4 << 16:
        lg.append("acct-%d" % (n % 3), EventData("Deposited", json.dumps({"amount": n, "note": "transfer %d" % n})))
        n += 1
    before = [(e.sequence, e.stream, e.version, e.data) for e in lg.read()]
    # Sealing runs in the background: a pass takes only the sealed segments,
    # so the log is reopened (which seals what is full) to make the count exact.
    lg.close()
    lg = varve.EventLog.open(path)
    dry = lg.archive(str(tmp_path / "cold"), before=(2 << 16) + 64, dry_run=True)
    assert dry["segments_archived"] == 2 and dry["archived_bytes"] == 0
    r = lg.archive(str(tmp_path / "cold"), before=(2 << 16) + 64)
    assert r["segments_archived"] == 2 and 0 < r["archived_bytes"] < r["raw_bytes"]
    assert r["dir"] == str(tmp_path / "cold") and r["archive_end"] == 2
    assert not (tmp_path / "arc" / "00000000000000000000.seg").exists()
    with pytest.raises(varve.InvalidArgument):
        lg.archive(str(tmp_path / "elsewhere"))
    lg.close()
    lg = varve.EventLog.open(path)
    assert [(e.sequence, e.stream, e.version, e.data) for e in lg.read()] == before
    assert [e.version for e in lg.read_stream("acct-1")] == list(range(1, len([b for b in before if b[1] == "acct-1"]) + 1))
    lg.close()


def _on_disk(path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file())


def test_crypto_shredding_seals_payloads_and_forget_erases_a_stream(tmp_path):
    key = varve.generate_master_key()
    assert isinstance(key, bytes) and len(key) == 32 and key != varve.generate_master_key()
    path = tmp_path / "log"
    lg = varve.EventLog.create(str(path), segment_bytes=1 << 16, master_key=key)
    assert lg.encrypted and lg.forgotten() == []
    for v in (1, 2, 3):
        lg.append("alice", EventData("Moved", b"alice-secret-%d" % v, metadata={"tenant": "acme"}),
                  expected=v - 1)
    lg.append(42, EventData("Moved", b"int-secret"))
    lg.flush()
    assert b"-secret" not in _on_disk(path)  # sealed on disk...
    events = list(lg.read())  # ... and read back in clear
    assert [(e.stream, e.data, e.encrypted, e.forgotten) for e in events] == [
        ("alice", b"alice-secret-1", True, False), ("alice", b"alice-secret-2", True, False),
        ("alice", b"alice-secret-3", True, False), (42, b"int-secret", True, False)]

    r = lg.forget("alice")
    assert r == {"keys_destroyed": 1, "events_forgotten": 3, "plain_events": 0, "forget_sequence": 1}
    gone = list(lg.read_stream("alice"))
    assert [(e.version, e.type, e.data, e.encrypted, e.forgotten, e.metadata) for e in gone] == [
        (v, "Moved", b"", True, True, {"tenant": b"acme"}) for v in (1, 2, 3)]
    assert [(e.stream, e.forgotten, e.data) for e in lg.read()][-1] == (42, False, b"int-secret")
    assert lg.read_stream_rows("alice", lambda *row: row, ["version", "data"]) == [(1, b""), (2, b""), (3, b"")]
    sub = lg.subscribe(0)
    first = sub.next(timeout=5)
    assert first.stream == "alice" and first.forgotten and first.data == b""
    sub.cancel()
    # A forgotten stream takes new events under a new key.
    lg.append("alice", EventData("Moved", b"alice-secret-4"), expected=3)
    assert [(e.data, e.forgotten) for e in lg.read_stream("alice")][-1] == (b"alice-secret-4", False)
    assert lg.forget(42)["forget_sequence"] == 2
    with pytest.raises(varve.NotFoundError) as info:
        lg.forget("nobody")
    assert info.value.stream == "nobody"
    fl = lg.forgotten()
    assert [(f["forget_sequence"], f["stream"]) for f in fl] == [(1, "alice"), (2, 42)]
    assert all(f["time_ns"] > 0 for f in fl)
    lg.close()

    # Another open with the key sees the forgets; read-only cannot forget.
    with varve.EventLog.open_read_only(str(path), master_key=bytearray(key)) as ro:
        assert [(e.stream, e.forgotten) for e in ro.read()] == [
            ("alice", True), ("alice", True), ("alice", True), (42, True), ("alice", False)]
        with pytest.raises(varve.ReadOnlyError):
            ro.forget("alice")


def test_crypto_shredding_refuses_a_wrong_or_missing_key(tmp_path):
    key = varve.generate_master_key()
    path = str(tmp_path / "log")
    with varve.EventLog.create(path, segment_bytes=1 << 16, master_key=key) as lg:
        lg.append("s", EventData("T", b"secret"))
    with pytest.raises(varve.InvalidArgument):
        varve.EventLog.open(path, master_key=varve.generate_master_key())
    with pytest.raises(varve.InvalidArgument):
        varve.EventLog.open_read_only(path, master_key=varve.generate_master_key())
    with pytest.raises(varve.InvalidArgument) as info:
        varve.EventLog.open(path)
    assert "master key" in str(info.value)
    with varve.EventLog.open_read_only(path) as ro:  # the bytes, not the key
        assert ro.encrypted and ro.forgotten() == []
        with pytest.raises(varve.InvalidArgument) as info:
            list(ro.read())
        assert "master key" in str(info.value)
    with pytest.raises(ValueError):
        varve.EventLog.open(path, master_key=key[:31])
    with pytest.raises(TypeError):
        varve.EventLog.open(path, master_key=key.hex())
    # A log without a key keeps payloads in clear and has nothing to forget.
    with varve.EventLog.create(str(tmp_path / "plain"), segment_bytes=1 << 16) as plain:
        plain.append("s", EventData("T", b"clear"))
        assert not plain.encrypted and plain.forgotten() == []
        e = next(iter(plain.read()))
        assert (e.data, e.encrypted, e.forgotten) == (b"clear", False, False)
        with pytest.raises(varve.InvalidArgument):
            plain.forget("s")


def test_master_key_files(tmp_path):
    key = varve.generate_master_key()
    (tmp_path / "hex").write_text(key.hex() + "\n")
    (tmp_path / "raw").write_bytes(key)
    (tmp_path / "bad").write_text("not a key\n")
    assert varve.load_master_key(str(tmp_path / "hex")) == key
    assert varve.load_master_key(tmp_path / "raw") == key
    with pytest.raises(varve.InvalidArgument) as info:
        varve.load_master_key(tmp_path / "bad")
    assert "bad" in str(info.value)
    with pytest.raises(varve.NotFoundError):
        varve.load_master_key(tmp_path / "missing")
    with varve.EventLog.create(str(tmp_path / "log"), master_key=varve.load_master_key(tmp_path / "hex")) as lg:
        lg.append("s", EventData("T", b"x"))
    with varve.EventLog.open(str(tmp_path / "log"), master_key=key) as lg:
        assert [e.data for e in lg.read()] == [b"x"]


def test_stream_lifecycle_delete_truncate_limits_and_scavenge(tmp_path):
    path = str(tmp_path / "life")
    lg = varve.EventLog.create(path, segment_bytes=1 << 16)
    # "gone" gets large events, "kept" small ones, turn about: about six 64 KiB segments.
    for i in range(400):
        lg.append("gone", EventData("T", b"g" * 800), expected=i)
        lg.append("kept", EventData("T", b"kept"), expected=i)
    none = {"deleted": False, "truncate_before": 0, "max_count": 0, "max_age_ns": 0}
    assert lg.stream_metadata("kept") == none and lg.stream_metadata_list() == []

    # Delete: reads and appends raise, log reads skip its events.
    assert lg.delete_stream("gone") == dict(none, deleted=True)
    with pytest.raises(varve.StreamDeletedError) as info:
        list(lg.read_stream("gone"))
    assert "deleted" in str(info.value) and info.value.code == "stream_deleted"
    assert isinstance(info.value, varve.NotFoundError)
    with pytest.raises(varve.StreamDeletedError) as info:
        lg.append("gone", EventData("T", b"more"))
    assert info.value.stream == "gone"
    assert [e.stream for e in lg.read()] == ["kept"] * 400
    assert lg.delete_stream("gone")["deleted"]  # deleted already: nothing changes
    with pytest.raises(varve.StreamDeletedError):
        lg.truncate_stream("gone", 2)
    with pytest.raises(varve.StreamDeletedError):
        lg.set_stream_limits("gone", max_count=1)
    with pytest.raises(varve.NotFoundError) as info:
        lg.delete_stream("nobody")
    assert info.value.stream == "nobody" and not isinstance(info.value, varve.StreamDeletedError)
    with pytest.raises(varve.NotFoundError):
        lg.truncate_stream("nobody", 2)

    # Truncate: the stream reads from the floor; it only moves forward.
    assert lg.truncate_stream("kept", 391) == dict(none, truncate_before=391)
    assert [e.version for e in lg.read_stream("kept")] == list(range(391, 401))
    assert [e.version for e in lg.read()] == list(range(391, 401))
    with pytest.raises(varve.InvalidArgument):
        lg.truncate_stream("kept", 10)
    with pytest.raises(varve.InvalidArgument):
        lg.truncate_stream("kept", 402)

    # Limits replace each other and read back; a stream need not exist yet.
    assert lg.set_stream_limits("kept", max_count=3) == dict(none, truncate_before=391, max_count=3)
    assert lg.stream_metadata("kept") == dict(none, truncate_before=391, max_count=3)
    assert [e.version for e in lg.read_stream("kept")] == [398, 399, 400]
    assert lg.set_stream_limits(7, max_age_ns=3600 * 10**9) == dict(none, max_age_ns=3600 * 10**9)
    listed = lg.stream_metadata_list()
    assert [(x["stream"], x["change_number"]) for x in listed] == [("gone", 1), ("kept", 3), (7, 4)]
    assert listed[1]["metadata"] == lg.stream_metadata("kept") and all(x["changed_ns"] > 0 for x in listed)

    # A read-only open sees every change and can make none.
    with varve.EventLog.open_read_only(path) as ro:
        assert ro.stream_metadata("kept") == dict(none, truncate_before=391, max_count=3)
        assert [x["stream"] for x in ro.stream_metadata_list()] == ["gone", "kept", 7]
        with pytest.raises(varve.StreamDeletedError):
            list(ro.read_stream("gone"))
        assert [e.version for e in ro.read_stream("kept")] == [398, 399, 400]
        with pytest.raises(varve.ReadOnlyError):
            ro.delete_stream("kept")
        with pytest.raises(varve.ReadOnlyError):
            ro.truncate_stream("kept", 399)
        with pytest.raises(varve.ReadOnlyError):
            ro.set_stream_limits("kept", max_count=1)
        with pytest.raises(varve.ReadOnlyError):
            ro.scavenge(dry_run=True)

    # Scavenge takes sealed segments only: reopening seals the full ones.
    lg.close()
    lg = varve.EventLog.open(path)
    dry = lg.scavenge(dry_run=True)
    assert dry["segments_examined"] >= 4 and dry["segments_rewritten"] > 0
    assert dry["events_removed"] > 300 and dry["bytes_freed"] == 0
    r = lg.scavenge()
    assert {k: r[k] for k in ("segments_examined", "segments_rewritten", "events_removed")} == {
        k: dry[k] for k in ("segments_examined", "segments_rewritten", "events_removed")}
    assert r["bytes_freed"] > 0
    # What was visible stays visible, and only that.
    assert [e.version for e in lg.read_stream("kept")] == [398, 399, 400]
    with pytest.raises(varve.StreamDeletedError):
        list(lg.read_stream("gone"))
    floor = lg.stream_metadata("kept")["truncate_before"]
    assert 391 <= floor <= 398 and lg.stream_metadata("kept")["max_count"] == 3
    assert [e.version for e in lg.read()] == list(range(floor, 401))
    lg.close()
    # The removed events are gone for good: the next open finds none to remove.
    with varve.EventLog.open(path) as lg:
        again = lg.scavenge(dry_run=True)
        assert again["segments_rewritten"] == 0 and again["events_removed"] == 0
        assert [e.version for e in lg.read_stream("kept")] == [398, 399, 400]
