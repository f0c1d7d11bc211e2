"""Signed test zones made by an independent signer (ldns-signzone), for DNSSEC answer tests.

The zone is tests/data/differential.test.zone plus a few names DNSSEC adds cases for (an
insecure delegation below an empty non-terminal, for Opt-Out). It is signed four ways, each
with a fresh ECDSA P-256 KSK and ZSK: by ldns-signzone with NSEC, NSEC3, and NSEC3 with the
Opt-Out flag (ldns still gives every delegation an NSEC3), and by BIND's dnssec-signzone
with NSEC3 Opt-Out, which leaves insecure delegations and the empty non-terminal above one
without an NSEC3, so the closest *provable* encloser proofs are exercised.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.name
import dns.zone

from nameserver.store.store import Store
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import Record
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.snapshot import ZoneSnapshot
from tests.tools import require_tool

DATA = Path(__file__).resolve().parent / "data"
# Presigned copies for the in-process tests (valid 2026-2046; remake with make_fixtures()).
FIXTURES = DATA / "dnssec"
BASE_ZONE = DATA / "differential.test.zone"
ORIGIN = "diff.test."
SIGN_TIMEOUT = 60
NSEC3_SALT = "ab12"
NSEC3_ITERATIONS = 0  # RFC 9276 §3.1

# Names for DNSSEC cases the base zone lacks.
EXTRA = """
; An insecure delegation below an empty non-terminal (ent3): with Opt-Out neither needs
; an NSEC3 of its own.
insec.ent3   3600 IN NS     ns.example.net.
; A secure delegation with in-zone glue.
sec2         3600 IN NS     ns1.sec2
sec2         3600 IN DS     54321 13 2 (
                                0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9 )
ns1.sec2     3600 IN A      192.0.2.54
"""


@dataclass(frozen=True)
class Variant:
    """One way of signing: its name, the signer (``ldns`` or ``bind``) and its options."""

    name: str
    options: tuple[str, ...]
    tool: str = "ldns"


NSEC = Variant("nsec", ())
NSEC3 = Variant("nsec3", ("-n", "-s", NSEC3_SALT, "-t", str(NSEC3_ITERATIONS)))
NSEC3_OPTOUT = Variant("nsec3-optout", (*NSEC3.options, "-p"))
NSEC3_OPTOUT_BIND = Variant(
    "nsec3-optout-bind", ("-A", "-3", NSEC3_SALT, "-H", str(NSEC3_ITERATIONS)), "bind"
)
VARIANTS = (NSEC, NSEC3, NSEC3_OPTOUT, NSEC3_OPTOUT_BIND)


def unsigned_text() -> str:
    """The zone to sign, as zone file text."""
    return BASE_ZONE.read_text(encoding="utf-8") + EXTRA


def sign(workdir: Path, variant: Variant, extra: Sequence[str] = ()) -> Path:
    """Sign the zone into ``workdir`` (``extra``: validity as ``(inception, expiration)``
    YYYYMMDD dates, or nothing for the signer's default); the signed file's path."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "diff.test.zone"
    source.write_text(unsigned_text(), encoding="utf-8")
    signed = workdir / "diff.test.zone.signed"
    if variant.tool == "bind":
        _sign_bind(workdir, variant, extra, source, signed)
        return signed
    keygen = require_tool("ldns-keygen")
    signzone = require_tool("ldns-signzone")
    dates = ("-i", extra[0], "-e", extra[1]) if extra else ()
    ksk = _run([keygen, "-a", "ECDSAP256SHA256", "-k", ORIGIN], workdir).strip()
    zsk = _run([keygen, "-a", "ECDSAP256SHA256", ORIGIN], workdir).strip()
    command = [signzone, *variant.options, *dates, "-o", ORIGIN, "-f", str(signed)]
    _run([*command, str(source), ksk, zsk], workdir)
    return signed


def _sign_bind(
    workdir: Path, variant: Variant, extra: Sequence[str], source: Path, signed: Path
) -> None:
    keygen = require_tool("dnssec-keygen")
    signzone = require_tool("dnssec-signzone")
    _run([keygen, "-q", "-a", "ECDSAP256SHA256", "-f", "KSK", ORIGIN], workdir)
    _run([keygen, "-q", "-a", "ECDSAP256SHA256", ORIGIN], workdir)
    dates = ("-s", extra[0] + "000000", "-e", extra[1] + "000000") if extra else ()
    command = [signzone, "-S", "-K", str(workdir), *variant.options, *dates, "-o", ORIGIN]
    _run([*command, "-O", "full", "-f", str(signed), str(source)], workdir)


def _run(command: Sequence[str], cwd: Path) -> str:
    done = subprocess.run(
        list(command), capture_output=True, text=True, cwd=cwd, timeout=SIGN_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def signed_records(path: Path, origin: str = ORIGIN) -> list[Record]:
    """Every RR of a signed zone file, RRSIG, NSEC and NSEC3 included."""
    zone = dns.zone.from_file(str(path), origin=origin, relativize=False, check_origin=False)
    return [Record(name, ttl, rdata) for name, ttl, rdata in zone.iterate_rdatas()]


def signed_snapshot(path: Path, origin: str = ORIGIN) -> ZoneSnapshot:
    """A snapshot of a signed zone file, as the server builds it from the store."""
    return ZoneSnapshot.from_records(dns.name.from_text(origin), signed_records(path, origin))


def store_signed_zone(db: Path, path: Path, origin: str = ORIGIN) -> None:
    """Create the zone in the store at ``db`` with all of ``path``'s records. The store's
    API takes them as they are (the CLI import refuses signer types on purpose)."""
    records = tuple(signed_records(path, origin))
    serial = next(int(r.rdata.serial) for r in records if r.rdtype == 6)  # type: ignore[attr-defined]
    changeset = Changeset(
        dns.name.from_text(origin), None, serial, (), records, "test", "presigned", time.time()
    )
    with Store(db) as store:
        store.create_zone(changeset, SerialPolicy.INCREMENT)


def fixture(variant: Variant) -> Path:
    """The presigned copy of the zone for ``variant``."""
    return FIXTURES / f"diff.test.{variant.name}.signed"


def make_fixtures() -> None:
    """Re-sign the presigned copies: ``python -c 'from tests.dnssec_zones import *;
    make_fixtures()'``."""
    import shutil
    import tempfile

    FIXTURES.mkdir(exist_ok=True)
    for variant in VARIANTS:
        with tempfile.TemporaryDirectory() as tmp:
            signed = sign(Path(tmp), variant, ("20260101", "20460101"))
            shutil.copyfile(signed, fixture(variant))
