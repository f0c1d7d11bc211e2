"""`zonefan keys ds` through algorithm rollovers 13 -> 15 -> 13, checked against what the
zone serves and against a validating unbound that trusts exactly what it prints.

The timeline of tests/test_rollover_unbound.py drives a zone on a fake clock (the parent
takes ``PARENT_DELAY`` to follow each DS change).  After every step `zonefan keys ds
--json` runs in-process with that clock (the command's own code; only its manager's
clock is the fake one) and:

* every DS it lists to publish matches a DNSKEY that `zonefan serve` serves, and the zone
  is signed with that DS's algorithm everywhere (every RRset has an RRSIG of it);
* a fresh unbound with ``harden-algo-downgrade: yes`` that trusts exactly those DS
  records validates positive, NODATA, NXDOMAIN, DNSKEY and CDS answers;
* no withdrawn DS is among them.

Negative control: right after the rollover is asked for, `keys ds` announces the new
key's DS as coming; a resolver trusting it then gets SERVFAIL (its DNSKEY is not served
yet), which is what an operator following the old `keys ds` met.  The forecast made at
that moment (`keys timeline --json`) is compared with what then happened: the same
steps at the same times, later only by what the parent took.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from click.testing import CliRunner
from dns.dnssectypes import DSDigest

from nameserver.store.store import Store
from nameserver.zone.zonefile import write_zone_file
from signer.policy import Denial, KeyStyle
from signer.timing import start_algorithm_rollover
from tests.test_rollover_unbound import (
    ORIGIN,
    ORIGIN_TEXT,
    PARENT_DELAY,
    POLICY_NAME,
    Timeline,
    _config,
    _duration,
    _policy,
    _step_queries,
    timeline,
)
from zonefan import keys_cli
from zonefan.cli import main
from zonefan.common import dnssec_manager

pytestmark = pytest.mark.timeout(300)

SWAP_GAP = 60  # the parent drops the old DS a minute after adding the new one


class FakeClockCli:
    """`zonefan` run in-process on the timeline's store, config and fake clock."""

    def __init__(self, line: Timeline, monkeypatch: pytest.MonkeyPatch) -> None:
        self.line = line

        def on_fake_clock(ctx: Any, store: Store) -> Any:
            manager = dnssec_manager(ctx, store)
            manager.clock = lambda: line.now
            return manager

        monkeypatch.setattr(keys_cli, "dnssec_manager", on_fake_clock)

    def json(self, *args: str) -> dict[str, Any]:
        config = self.line.workdir / "zonefan.toml"
        policy = self.line.manager.policies[POLICY_NAME]
        key_dir = json.dumps(str(self.line.workdir / "keys"))
        config.write_text(f"key-dir = {key_dir}\n" + _config(policy), encoding="utf-8")
        result = CliRunner().invoke(
            main, ["--db", self.line.store.path, "--config", str(config), *args, "--json"]
        )
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.stdout)
        return data


def _served_ds(line: Timeline) -> set[str]:
    """The DS (SHA-256) of every DNSKEY `zonefan serve` serves now."""
    response = line._serve().query(ORIGIN_TEXT, "DNSKEY")
    return {
        dns.dnssec.make_ds(ORIGIN, rdata, DSDigest.SHA256).to_text()
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.DNSKEY
        for rdata in rrset
    }


def _unsigned_with(line: Timeline, algorithm: int) -> list[str]:
    """The RRsets of the zone (as stored now) without an RRSIG of ``algorithm``."""
    text = write_zone_file(ORIGIN, line.store.records(ORIGIN))
    zone = dns.zone.from_text(text, ORIGIN, relativize=False)
    missing = []
    for name, node in zone.nodes.items():
        for rdataset in node:
            if rdataset.rdtype == dns.rdatatype.RRSIG:
                continue
            sigs = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdataset.rdtype)
            if sigs is None or algorithm not in {int(s.algorithm) for s in sigs}:
                missing.append(f"{name} {dns.rdatatype.to_text(rdataset.rdtype)}")
    return missing


def check_keys_ds(line: Timeline, cli: FakeClockCli) -> dict[str, Any]:
    """The checks of one step (module docstring); problems go to ``line.failures``."""
    data = cli.json("keys", "ds", ORIGIN_TEXT)
    publish = data["publish"]
    problems = []
    if not publish:
        problems.append("keys ds lists no DS to publish")
    served = _served_ds(line)
    for entry in publish:
        if entry["ds"] not in served:
            problems.append(f"DS {entry['ds']} matches no DNSKEY served ({sorted(served)})")
        algorithm = int(entry["ds"].split()[1])
        unsigned = _unsigned_with(line, algorithm)
        if unsigned:
            problems.append(f"DS {entry['ds']}: no RRSIG of algorithm {algorithm} on {unsigned}")
    withdrawn = {k.key_id for k in line.timings() if k.ds_withdrawn is not None}
    listed = {e["key"] for e in publish}
    if listed & withdrawn:
        problems.append(f"withdrawn keys listed to publish: {sorted(listed & withdrawn)}")
    if {e["key"] for e in data["remove"]} != withdrawn - {
        k.key_id for k in line.timings() if k.ds_gone is not None
    }:
        problems.append(f"keys ds lists {data['remove']} to remove, withdrawn: {withdrawn}")
    anchors = [e["record"] for e in publish]
    with line.resolver("keys-ds", anchors, at=line.now) as unbound:
        problems += line.expect(unbound, _step_queries(len(line.steps)), secure=True)
    shown = ", ".join(f"{e['tag']}/{e['ds'].split()[1]}" for e in publish) or "-"
    line.add_step(f"keys ds: {shown}", "FAILED" if problems else "AD", [e["ds"] for e in publish])
    where = f"at {_duration(line.now - line.start)}"
    line.failures += [f"{where}, keys ds: {p}" for p in problems]
    return data


def roll(line: Timeline, cli: FakeClockCli, after: int) -> None:
    """An algorithm rollover to ``after`` with the policy changed too, checked after every
    step; the forecast made when it is asked for is compared with what happened."""
    before_keys = {k.key_id for k in line.timings()}
    line.manager.policies[POLICY_NAME] = dataclasses.replace(line.policy, algorithm=after)
    line.policy = line.manager.policies[POLICY_NAME]
    asked = line.now
    line.operator(
        f"algorithm rollover to {after} requested",
        lambda k, t: start_algorithm_rollover(k, after, line.policy, t),
    )
    data = check_keys_ds(line, cli)
    new = [k for k in line.timings() if k.key_id not in before_keys and k.role.is_sep]
    assert new and [e["key"] for e in data["coming"]] == [k.key_id for k in new]
    assert not _served_ds(line) & {e["ds"] for e in data["coming"]}
    line.check_bogus(
        "control: trusting the DS `keys ds` announces as coming",
        [e["ds"] for e in data["coming"]],
    )
    status = cli.json("keys", "status", ORIGIN_TEXT)
    assert not [n for n in status["notes"] if "algorithm rollover" in n], status["notes"]
    forecast = cli.json("keys", "timeline", ORIGIN_TEXT)

    while line.busy():
        line.step()
        check_keys_ds(line, cli)

    lived = {(a.kind.value, a.key_id): t for t, a in line.actions if t > asked}
    planned = {(s["step"], s["key"]): s for s in forecast["steps"] if not s["assumed"]}
    assert set(planned) == set(lived), (sorted(planned), sorted(lived))
    first_assumed = min(s["after"] for s in forecast["steps"] if s["assumed"])
    start = _posix(forecast["from"])
    for ident, step in planned.items():
        assert step["at"] == _when(start + step["after"])
        # Exact until the first DS change at the parent, which the forecast takes as
        # instant; after it, later by exactly what this parent took.
        expected = 0 if step["after"] <= first_assumed else PARENT_DELAY + SWAP_GAP
        assert lived[ident] - _posix(step["at"]) == expected, (ident, step)
    assert {e["key"] for e in cli.json("keys", "ds", ORIGIN_TEXT)["publish"]} == {
        k.key_id for k in new
    }


def _posix(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp())


def _when(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("style", "denial"),
    [(KeyStyle.CSK, Denial.NSEC), (KeyStyle.KSK_ZSK, Denial.NSEC3)],
    ids=["csk", "ksk-zsk"],
)
def test_keys_ds_is_safe_at_every_step_of_algorithm_rollovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style: KeyStyle, denial: Denial
) -> None:
    with timeline(tmp_path, _policy(style, 13), denial, swap_gap=SWAP_GAP) as line:
        cli = FakeClockCli(line, monkeypatch)
        check_keys_ds(line, cli)
        roll(line, cli, 15)
        roll(line, cli, 13)
        line.assert_ok()
