"""The provider contract kit (sync.providers.testkit) run against the one provider API we
can run here for real, PowerDNS's, through the kit's fault proxy; and the kit's own checks
failing for a target that breaks the contract (so a green run means something)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dns.name
import pytest

from sync.plan import Plan
from sync.providers.base import Held
from sync.providers.powerdns import PdnsZoneState, PowerDnsTarget, powerdns_from_config
from sync.providers.testkit.contract import CHECKS, Contract, run_check
from sync.settings import TargetContext
from tests.pdns import PdnsServer

pytestmark = [pytest.mark.external, pytest.mark.timeout(300)]

KEY_ENV = "PDNS_CONTRACT_KEY"
BASE = dns.name.from_text("contract.test.")


@pytest.fixture
def pdns(module_pdns: PdnsServer) -> PdnsServer:
    """The tests of this module share one pdns_server (each uses zones of its own)."""
    return module_pdns


def pdns_target(
    server: PdnsServer, endpoint: str, cls: type[PowerDnsTarget] = PowerDnsTarget
) -> Any:
    section = {"url": endpoint, "api-key-env": KEY_ENV, "signed-zones": "refuse", "batch-size": 60}
    ctx = TargetContext({}, None, {KEY_ENV: server.api_key})
    built = powerdns_from_config("pdns", section, ctx)
    if cls is PowerDnsTarget:
        return built
    return cls(built.settings)


def contract(server: PdnsServer, cls: type[PowerDnsTarget] = PowerDnsTarget) -> Contract:
    return Contract(
        make_target=lambda endpoint: pdns_target(server, endpoint, cls),
        upstream=server.api_url,
        zone=BASE,
        secrets=(server.api_key,),
        fault_method="PATCH",
    )


@pytest.mark.parametrize("check", CHECKS)
def test_powerdns_meets_the_contract(pdns: PdnsServer, check: str) -> None:
    asyncio.run(run_check(contract(pdns), check))


class DropsLastChange(PowerDnsTarget):
    """Loses the last RRset of every plan it applies, and says nothing."""

    async def apply(self, plan: Plan, state: PdnsZoneState | None) -> Held[PdnsZoneState] | None:
        trimmed = Plan(
            zone=plan.zone,
            target=plan.target,
            serial=plan.serial,
            changes=plan.changes[:-1],
            create_zone=plan.create_zone,
            desired=plan.desired,
        )
        await super().apply(trimmed, state)
        return None


class LeaksItsKey(PowerDnsTarget):
    """Logs its API key when it reads."""

    async def read(self, zone: dns.name.Name) -> Held[PdnsZoneState] | None:
        import logging

        logging.getLogger("leaky").debug("reading with key %s", self.settings.api_key)
        return await super().read(zone)


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (DropsLastChange, "create_from_empty", "missing at the back end"),
        (DropsLastChange, "round_trip", "missing at the back end"),
        (LeaksItsKey, "credentials_never_logged", "a credential was logged"),
    ],
)
def test_the_kit_fails_a_target_that_breaks_the_contract(
    pdns: PdnsServer, cls: type[PowerDnsTarget], check: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(AssertionError, match=message):
        asyncio.run(run_check(contract(pdns, cls), check))
