"""Moving a zone onto zonefan: the zone read from where it is served now, through a sync
target's API (``zone import --from-target``) or by AXFR from a running primary (``zone
import --axfr``), as the records ``zone import`` validates and stores in one changeset.

The one place the store's import meets the sync package: the target is built from the
sidecar's config as ``zonefan sync`` builds it and read through its ``read()``; the transfer
is the sidecar's own (:class:`sync.source.ZoneSource`), with its error messages. Loaded only
by these two forms of the command, so ``zone import FILE`` never imports sync.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import dns.name
import dns.rdatatype

from nameserver.zone.records import Record
from nameserver.zone.serial import Clock, SerialPolicy, next_serial
from settings import Address, SettingsError, Source, Table, TsigKey
from settings.secrets import DEFAULT_TSIG_ALGORITHM, parse_tsig_key
from sync.config import load_sync_config
from sync.errors import SourceError, SyncConfigError, SyncError, TargetError
from sync.model import RRset, ZoneData
from sync.providers.base import RecordTarget
from sync.providers.capabilities import Owner
from sync.source import ZoneSource

# The SOA made for a zone whose provider shows none: the timers RIPE-203 recommends for a
# zone's SOA (refresh 2 h, retry 1 h, expire 14 d) and a 5 minute negative TTL (RFC 2308
# §5), what the operator edits afterwards if the zone needs other values.
SOA_REFRESH = 7200
SOA_RETRY = 3600
SOA_EXPIRE = 1209600
SOA_MINIMUM = 300
DEFAULT_NS_TTL = 3600  # the apex NS made of a provider's nameservers, when it shows none
AXFR_TIMEOUT = 10.0  # seconds per message of the transfer, as the sidecar's default

# The command-line option each field of a key built from options comes from, for errors.
_KEY_OPTIONS = {
    "": "--key",
    "algorithm": "--key-algorithm",
    "secret-env": "--key-secret-env",
    "secret-file": "--key-file",
}


@dataclass(frozen=True)
class Fetched:
    """A zone read for import: its data, what it came from (for messages: ``target pdns``,
    ``the AXFR of example.test. from 192.0.2.1:53``), what was done to it on the way
    (said on stderr), and whether DNSSEC records in it are dropped rather than refused
    (a provider's own signatures are never ours to keep)."""

    data: ZoneData
    label: str
    notes: tuple[str, ...] = ()
    strip_dnssec: bool = False


def records_of(data: ZoneData) -> list[Record]:
    """The zone's records as the store's import takes them."""
    return [
        Record(dns.name.Name(rrset.name.labels), rrset.ttl, rdata)
        for rrset in data
        for rdata in rrset.rdatas
    ]


# -- from a sync target ------------------------------------------------------------------


def from_target(
    config: Path,
    name: str,
    zone: dns.name.Name,
    policy: SerialPolicy,
    shared_keys: Mapping[str, TsigKey] | None = None,
    env: Mapping[str, str] | None = None,
    clock: Clock = time.time,
) -> Fetched:
    """``zone`` as the target ``name`` of the sync config ``config`` holds it. Without an
    SOA there (a cloud shows its own, or none), one is made from the apex NS with the
    first serial of ``policy`` (1, or today's date serial); without an apex NS, the
    provider's nameservers make one."""
    if not config.exists():
        raise click.BadParameter(
            f"no sync config at {config}: name the sidecar's config (the file with the "
            "[target.NAME] tables) with --config FILE",
            param_hint="--config",
        )
    problems: list[SettingsError] = []
    try:
        cfg = load_sync_config(config, env, shared_keys=shared_keys, problems=problems)
    except SyncConfigError as exc:
        raise click.ClickException(str(exc)) from None
    spec = cfg.targets.get(name)
    if spec is None:
        broken = [p for p in problems if p.path.split(".")[:2] == ["target", name]]
        if broken:
            raise click.ClickException(str(broken[0]))
        configured = ", ".join(sorted([*cfg.targets, *_broken_names(problems)])) or "none"
        raise click.BadParameter(
            f"unknown target {name!r} in {config}; configured: {configured}",
            param_hint="--from-target",
        )
    target = spec.target
    if not isinstance(target, RecordTarget):
        raise click.ClickException(
            f"target {name} is a secondary ({type(target).__name__}): it transfers the zone "
            "from its primary and has no records API to read it from; take the zone over "
            f"from its DNS server instead: zonefan zone import --axfr ADDR {zone}"
        )
    label = f"target {name}"
    data, nameservers = asyncio.run(_read(target, zone, config))
    notes: list[str] = []
    if zone not in cfg.zones:
        notes.append(
            f"{zone} is not among the [primary] zones of {config}: add it there to push "
            "it to the targets"
        )
    if data.apex_ns() is None:
        if not nameservers:
            raise click.ClickException(
                f"{label} shows no apex NS set for {zone} and names no nameservers for it: "
                "a zone needs its NS set; add it at the provider, or import the zone from "
                "a file or by AXFR"
            )
        ns = RRset.parse(zone, dns.rdatatype.NS, DEFAULT_NS_TTL, [n.to_text() for n in nameservers])
        data = ZoneData.build(zone, [*data, ns])
        notes.append(
            f"{label} shows no apex NS set for {zone}: made one of its nameservers "
            f"({' '.join(ns.texts())})"
        )
    if data.get(zone, dns.rdatatype.SOA) is None:
        if target.capabilities.apex_soa is not Owner.PROVIDER:
            raise click.ClickException(
                f"{label} holds {zone} without an SOA, so it does not serve it (a creation "
                "that did not finish?); push the zone there again, or import it from a file "
                "or by AXFR"
            )
        soa = template_soa(data, next_serial(0, policy, clock))
        data = ZoneData.build(zone, [*data, soa])
        notes.append(
            f"{label} shows no SOA for {zone} (the provider makes its own): made one from "
            f"the apex NS: {soa.texts()[0]} (refresh, retry, expire, minimum); change it "
            f"with `zonefan record set {zone} @ {soa.ttl} SOA ...`"
        )
    return Fetched(data, label, tuple(notes), strip_dnssec=True)


def _broken_names(problems: Sequence[SettingsError]) -> list[str]:
    """The targets whose tables the config loader left out (their errors are elsewhere)."""
    names = []
    for problem in problems:
        parts = problem.path.split(".")
        if len(parts) >= 2 and parts[0] == "target":
            names.append(parts[1])
    return names


async def _read(
    target: RecordTarget[Any], zone: dns.name.Name, config: Path
) -> tuple[ZoneData, list[dns.name.Name]]:
    """The zone the target holds, and its nameservers when its data has no apex NS."""
    try:
        await target.open()
        held = await target.read(zone)
        if held is None:
            raise click.ClickException(
                f"target {target.name} holds no zone {zone}: check the zone name, or that "
                f"the target's settings in {config} reach the account that has it"
            )
        nameservers: list[dns.name.Name] = []
        if held.data.apex_ns() is None:
            nameservers = await target.nameservers(zone)
        return held.data, nameservers
    except SyncConfigError as exc:  # a rejected API key, an unreachable URL, ...
        raise click.ClickException(str(exc.located(str(config)))) from None
    except SyncError as exc:  # a TargetError says "target pdns: ..." with the provider's text
        source = str(exc) if isinstance(exc, TargetError) else f"target {target.name}: {exc}"
        message = f"cannot read {zone} from {source}; nothing was imported"
        raise click.ClickException(message) from None
    finally:
        await target.close()


def template_soa(data: ZoneData, serial: int) -> RRset:
    """An SOA for a zone that has an apex NS but no SOA: its MNAME the first nameserver
    in canonical order, RNAME hostmaster at the zone, ``serial``, the template timers, and
    the apex NS TTL."""
    ns = data.apex_ns()
    assert ns is not None
    mname = min(getattr(r, "target") for r in ns.rdatas)  # noqa: B009 - NS rdata
    rname = dns.name.Name((b"hostmaster", *data.origin.labels))
    text = f"{mname} {rname} {serial} {SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {SOA_MINIMUM}"
    return RRset.parse(data.origin, dns.rdatatype.SOA, ns.ttl, [text])


# -- by AXFR -------------------------------------------------------------------------------


def by_axfr(
    server: Address, zone: dns.name.Name, key: TsigKey | None, timeout: float = AXFR_TIMEOUT
) -> Fetched:
    """``zone`` transferred from ``server`` (TSIG-signed with ``key``), as the sidecar
    transfers it from its primary. DNSSEC records in it are the import's to refuse."""
    source = ZoneSource(server, key, timeout=timeout)
    try:
        fetched = asyncio.run(source.fetch(zone))
    except SourceError as exc:  # names the server, the rcode or the TSIG failure
        raise click.ClickException(f"{exc}; nothing was imported") from None
    return Fetched(fetched.data, f"the AXFR of {zone} from {server}")


def tsig_key(
    label: str | None,
    algorithm: str | None,
    secret_env: str | None,
    secret_file: str | None,
    configured: Mapping[str, TsigKey],
    env: Mapping[str, str] | None = None,
) -> TsigKey | None:
    """The TSIG key of ``--key NAME``: a ``[key.NAME]`` table of the config, or the key
    NAME whose secret ``--key-secret-env`` or ``--key-file`` gives, read by the settings
    grammar (base64, long enough, a private file) as a ``[key.NAME]`` table is."""
    if label is None:
        if secret_env or secret_file or algorithm:
            raise click.UsageError(
                "--key-secret-env, --key-file and --key-algorithm need --key NAME (the key's "
                "name, as the primary knows it)"
            )
        return None
    if secret_env is None and secret_file is None:
        if label in configured:
            if algorithm is not None:
                raise click.UsageError(
                    f"--key-algorithm goes with --key-secret-env or --key-file; [key.{label}] "
                    "of the config sets its own algorithm"
                )
            return configured[label]
        known = ", ".join(sorted(configured)) or "none"
        raise click.BadParameter(
            f"{label!r} is not a [key.NAME] table of the config (defined: {known}); give its "
            "secret with --key-secret-env VAR or --key-file PATH",
            param_hint="--key",
        )
    if secret_env is not None and secret_file is not None:
        raise click.UsageError("give the key's secret once: --key-secret-env or --key-file")
    fields = {"algorithm": algorithm or DEFAULT_TSIG_ALGORITHM}
    if secret_env is not None:
        fields["secret-env"] = secret_env
    else:
        assert secret_file is not None
        fields["secret-file"] = secret_file
    source = Source(None, dict(os.environ) if env is None else env)
    try:
        return parse_tsig_key(label, Table(fields, "", source))
    except SettingsError as exc:
        raise click.BadParameter(exc.reason, param_hint=_KEY_OPTIONS.get(exc.path)) from None
