"""A validating resolver sees a pool's withdrawal through the secondary: `zonefan serve`
withdraws a dead backend in a signed zone, a Knot secondary transfers it, and unbound, whose
only server for the zone is that Knot and whose trust anchor is the zone's DS, answers the
pool without the member and with AD set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.servers import (
    UnboundServer,
    query_message,
    trust_anchor,
)
from tests.test_pools_serve import (
    AMS,
    FAILOVER_DEADLINE,
    FRA,
    POOL,
    ZONE,
    Backends,
    addresses,
    assert_signed,
    serving_to_knot,
)
from tests.tools import free_port, require_tool
from tests.wait import wait_until


def validated(unbound: UnboundServer) -> tuple[set[str], bool] | None:
    """The pool's addresses as ``unbound`` resolves them and whether it set AD; None unless
    it answered NOERROR."""
    query = dns.message.make_query(POOL, "A", want_dnssec=True)
    query.flags |= dns.flags.AD
    response = query_message(unbound.host, unbound.port, query)
    if response.rcode() != dns.rcode.NOERROR:
        return None
    rrset = response.get_rrset(
        dns.message.ANSWER, dns.name.from_text(POOL), dns.rdataclass.IN, dns.rdatatype.A
    )
    found = set() if rrset is None else {r.address for r in rrset}
    return found, bool(response.flags & dns.flags.AD)


@pytest.fixture
def backends() -> Iterator[Backends]:
    b = Backends(free_port())
    try:
        yield b
    finally:
        b.close()


@pytest.mark.external
def test_unbound_validates_the_withdrawal_through_the_secondary(
    tmp_path: Path, backends: Backends
) -> None:
    for tool in ("knotd", "knotc", "unbound"):
        require_tool(tool)
    with serving_to_knot(tmp_path, backends) as (primary, knot):
        anchor = trust_anchor(primary.db, ZONE, cwd=tmp_path)
        # Unbound asks only Knot; it is not asked for the pool before the withdrawal,
        # so no cached answer (TTL 30) stands between it and the changed one.
        with UnboundServer(tmp_path / "unbound", anchor, knot.port, ZONE) as unbound:
            backends.stop(FRA)
            wait_until(
                lambda: addresses(knot) == {AMS}, FAILOVER_DEADLINE + 5, 0.02, "knot: fra out"
            )
            # The secondary itself serves the new RRset, signed: a resolver's answer
            # alone could come from a retry elsewhere.
            assert_signed(knot, {AMS})
            assert addresses(primary) == {AMS}
            wait_until(lambda: validated(unbound) == ({AMS}, True), 10, 0.05, "unbound: {ams}, AD")
