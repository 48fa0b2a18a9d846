"""The eventsourcing library's own recorder and application test cases,
unchanged, run against the varve recorders (eventsourcing_varve)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    ProcessRecorder,
    TrackingRecorder,
)
from eventsourcing.tests.application import ApplicationTestCase, ExampleApplicationTestCase
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    InfrastructureFactoryTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)
from eventsourcing.utils import Environment

from eventsourcing_varve import (
    VarveAggregateRecorder,
    VarveApplicationRecorder,
    VarveDatastore,
    VarveFactory,
    VarveProcessRecorder,
    VarveTrackingRecorder,
)

# Small segments: each test makes a log of its own.
SEGMENT_BYTES = 1 << 20


class _VarveDirs:
    """A fresh directory per test; every log opened in it is closed after."""

    def setUp(self) -> None:
        self.varve_tmp = tempfile.mkdtemp(prefix="varve-es-")
        self.varve_recorders: list[Any] = []
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        for r in self.varve_recorders:
            r.close()
        shutil.rmtree(self.varve_tmp, ignore_errors=True)

    def varve_recorder(self, cls: type[Any], purpose: str = "events") -> Any:
        ds = VarveDatastore.acquire(os.path.join(self.varve_tmp, purpose), "group", SEGMENT_BYTES)
        r = cls(ds)
        self.varve_recorders.append(r)
        return r


class TestVarveAggregateRecorder(_VarveDirs, AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return self.varve_recorder(VarveAggregateRecorder)


class TestVarveAggregateRecorderTextIds(_VarveDirs, AggregateRecorderTestCase):
    def new_originator_id(self) -> str:
        return "account-" + os.urandom(6).hex()

    def create_recorder(self) -> AggregateRecorder:
        r = self.varve_recorder(VarveAggregateRecorder)
        r.originator_id_type = "text"
        return r


class TestVarveApplicationRecorder(_VarveDirs, ApplicationRecorderTestCase):
    def create_recorder(self) -> ApplicationRecorder:
        return self.varve_recorder(VarveApplicationRecorder)

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestVarveNonInterleavingNotificationIDs(_VarveDirs, NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> ApplicationRecorder:
        return self.varve_recorder(VarveApplicationRecorder)


class TestVarveTrackingRecorder(_VarveDirs, TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return self.varve_recorder(VarveTrackingRecorder)


class TestVarveProcessRecorder(_VarveDirs, ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        return self.varve_recorder(VarveProcessRecorder)


class _SubclassOfVarveTrackingRecorder(VarveTrackingRecorder):
    pass


class TestVarveInfrastructureFactory(InfrastructureFactoryTestCase[VarveFactory]):
    def setUp(self) -> None:
        self.varve_tmp = tempfile.mkdtemp(prefix="varve-es-")
        self.env = Environment("TestCase")
        self.env[InfrastructureFactory.PERSISTENCE_MODULE] = "eventsourcing_varve"
        self.env[VarveFactory.VARVE_DIR] = self.varve_tmp
        self.env[VarveFactory.VARVE_SEGMENT_BYTES] = str(SEGMENT_BYTES)
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        shutil.rmtree(self.varve_tmp, ignore_errors=True)

    def expected_factory_class(self) -> type[VarveFactory]:
        return VarveFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return VarveAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return VarveApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return VarveTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return _SubclassOfVarveTrackingRecorder

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return VarveProcessRecorder


class _VarveOsEnviron:
    """Applications made with no env of their own read os.environ."""

    def setUp(self) -> None:
        self.varve_tmp = tempfile.mkdtemp(prefix="varve-es-")
        self._saved = {k: os.environ.get(k) for k in ("PERSISTENCE_MODULE", "VARVE_DIR", "VARVE_SEGMENT_BYTES")}
        os.environ["PERSISTENCE_MODULE"] = "eventsourcing_varve"
        os.environ["VARVE_DIR"] = self.varve_tmp
        os.environ["VARVE_SEGMENT_BYTES"] = str(SEGMENT_BYTES)
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(self.varve_tmp, ignore_errors=True)


class TestVarveExampleApplication(_VarveOsEnviron, ExampleApplicationTestCase):
    expected_factory_topic = "eventsourcing_varve:VarveFactory"


class TestVarveApplication(_VarveOsEnviron, ApplicationTestCase):
    pass


del AggregateRecorderTestCase
del ApplicationRecorderTestCase
del TrackingRecorderTestCase
del ProcessRecorderTestCase
del InfrastructureFactoryTestCase
del NonInterleavingNotificationIDsBaseCase
del ExampleApplicationTestCase
del ApplicationTestCase


# --- projections: the library's projection test cases, with a materialised
# view kept in a varve log (each counter a stream, each increment one atomic
# append of the counter's event and the tracking record it accounts for).

from eventsourcing.persistence import StoredEvent, Tracking  # noqa: E402
from eventsourcing.tests.projection import (  # noqa: E402
    AggregateEventCountersProjectionTestCase,
    EventCountersViewTestCase,
    EventSourcedProjectionTestCase,
)
from eventsourcing.tests.projection import EventCountersView  # noqa: E402


class VarveEventCounters(VarveTrackingRecorder, EventCountersView):
    CREATED = "counter-created"
    SUBSEQUENT = "counter-subsequent"

    def _count(self, counter: str) -> int:
        return self.datastore.log.version_of(counter)

    def _increment(self, counter: str, tracking: Tracking) -> None:
        with self.datastore.lock:
            n = self._count(counter)
            self._insert([StoredEvent(counter, n + 1, "CounterIncremented", b"")], tracking)

    def get_created_event_counter(self) -> int:
        return self._count(self.CREATED)

    def get_subsequent_event_counter(self) -> int:
        return self._count(self.SUBSEQUENT)

    def incr_created_event_counter(self, tracking: Tracking) -> None:
        self._increment(self.CREATED, tracking)

    def incr_subsequent_event_counter(self, tracking: Tracking) -> None:
        self._increment(self.SUBSEQUENT, tracking)


class _VarveEnv:
    """The projection runners build their factories from `env`."""

    def setUp(self) -> None:
        self.varve_tmp = tempfile.mkdtemp(prefix="varve-es-")
        self.env = {
            "PERSISTENCE_MODULE": "eventsourcing_varve",
            "VARVE_DIR": self.varve_tmp,
            "VARVE_SEGMENT_BYTES": str(SEGMENT_BYTES),
        }
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        shutil.rmtree(self.varve_tmp, ignore_errors=True)


class TestVarveEventCountersView(_VarveDirs, EventCountersViewTestCase):
    def construct_event_counters_view(self) -> EventCountersView:
        return self.varve_recorder(VarveEventCounters)


class TestVarveAggregateEventCountersProjection(_VarveEnv, AggregateEventCountersProjectionTestCase):
    view_class = VarveEventCounters


class TestVarveEventSourcedProjection(_VarveEnv, EventSourcedProjectionTestCase):
    pass


del EventCountersViewTestCase
del AggregateEventCountersProjectionTestCase
del EventSourcedProjectionTestCase
