"""A provider held in memory: the engine's reference target in tests, and the kit's own
check that its contract can be met."""

from __future__ import annotations

from dataclasses import dataclass

import dns.name

from sync.model import RRset, RRsetKey, ZoneData
from sync.plan import Action, Plan
from sync.providers.base import Capabilities, DnssecMode, Held, RecordTarget


@dataclass
class Fault:
    """The next ``times`` reads or applies raise ``error``."""

    error: Exception
    times: int


class MemoryTarget(RecordTarget[int]):
    """Counts every RRset written and fails on demand. Its state is a version number that
    each apply raises: an apply planned against an older read is refused, as a provider
    with etags would refuse it."""

    def __init__(
        self,
        name: str,
        dnssec: DnssecMode = DnssecMode.PRESIGNED,
        capabilities: Capabilities | None = None,
    ) -> None:
        super().__init__(name, capabilities or Capabilities(dnssec=dnssec, batch_size=5))
        self.data: dict[RRsetKey, RRset] | None = None
        self.faults: list[Fault] = []
        self.writes: dict[RRsetKey, int] = {}
        self.reads = 0
        self.version = 0

    def _maybe_fail(self) -> None:
        if self.faults:
            fault = self.faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self.faults.pop(0)
            raise fault.error

    async def read(self, zone: dns.name.Name) -> Held[int] | None:
        self.reads += 1
        self._maybe_fail()
        if self.data is None:
            return None
        return Held(ZoneData(zone, dict(self.data)), self.version)

    async def apply(self, plan: Plan, state: int | None) -> Held[int] | None:
        self._maybe_fail()
        if self.data is not None and state is not None and state != self.version:
            raise AssertionError(f"apply planned against version {state}, not {self.version}")
        if self.data is None:
            self.data = {}
        for change in plan.changes:
            if change.action == Action.DELETE:
                del self.data[change.key]
            else:
                assert change.new is not None
                self.data[change.key] = change.new
                self.writes[change.key] = self.writes.get(change.key, 0) + 1
        self.version += 1
        if plan.desired is None:
            return None
        return Held(ZoneData(plan.zone, dict(self.data)), self.version)

    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        return [dns.name.from_text(f"ns.{self.name}.net.")]


@dataclass(frozen=True)
class Fetched:
    """A zone as a source returns it (``sync.engine.Fetched``)."""

    data: ZoneData
    method: str = "AXFR"


class StaticSource:
    """The primary, as a zone a test replaces (``current``): a ``sync.engine.ZoneFetcher``."""

    def __init__(self, data: ZoneData) -> None:
        self.current = data

    async def serial(self, zone: dns.name.Name) -> int:
        return self.current.serial

    async def fetch(self, zone: dns.name.Name, have: ZoneData | None) -> Fetched:
        return Fetched(self.current)
