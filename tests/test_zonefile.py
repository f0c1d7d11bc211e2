"""Zone files in and out: directives, locations, errors, canonical output and round trips,
with named-checkzone and kzonecheck as independent judges of what we write."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import pytest

from nameserver.errors import ZoneFileError
from nameserver.zone.records import Record, parse_record
from nameserver.zone.zonefile import (
    MAX_INCLUDE_DEPTH,
    ParsedZone,
    _SourceTokenizer,
    read_zone_file,
    read_zone_text,
    write_zone_file,
)
from tests.tools import PROJECT_ROOT, require_tool, shared_file

DATA = PROJECT_ROOT / "tests" / "data" / "zonefile"
EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
EX = dns.name.from_text("ex.")
ROOT = dns.name.root

HEAD = "$ORIGIN ex.\n$TTL 300\n"  # two lines: the first RR after it is on line 3


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def rec(owner: str, ttl: int, rdtype: str, rdata: str, origin: dns.name.Name = EX) -> Record:
    return parse_record(owner, ttl, rdtype, rdata, origin)


def texts(zone: ParsedZone) -> list[str]:
    return [r.to_text() for r in zone.records]


def contents(zone: ParsedZone) -> set[tuple[object, int]]:
    """Identities with TTLs: what a round trip must keep."""
    return {(r.identity, r.ttl) for r in zone.records}


def error_of(text: str, filename: str = "x.zone") -> ZoneFileError:
    with pytest.raises(ZoneFileError) as info:
        read_zone_text(text, filename=filename)
    return info.value


# --- directives and syntax ----------------------------------------------------------------


def test_origin_at_and_relative_names() -> None:
    zone = read_zone_text(
        "$ORIGIN ex.\n"
        "@ 300 IN NS ns1\n"
        "ns1 300 IN A 192.0.2.1\n"
        "$ORIGIN sub.ex.\n"
        "www 300 IN CNAME @\n"
        "$ORIGIN deeper\n"  # relative to the current origin
        "x 300 IN MX 10 mail.ex.\n"
    )
    assert zone.origin == EX
    assert texts(zone) == [
        "ex. 300 IN NS ns1.ex.",
        "ns1.ex. 300 IN A 192.0.2.1",
        "www.sub.ex. 300 IN CNAME sub.ex.",
        "x.deeper.sub.ex. 300 IN MX 10 mail.ex.",
    ]


def test_ttl_directive_units_and_class_before_ttl() -> None:
    zone = read_zone_text(
        "$ORIGIN ex.\n$TTL 1h\na IN A 192.0.2.1\nb 60 IN A 192.0.2.2\nc IN 1d A 192.0.2.3\n"
        "$TTL 2w1d\nd A 192.0.2.4\n"
    )
    assert [r.ttl for r in zone.records] == [3600, 60, 86400, 15 * 86400]


def test_ttl_without_dollar_ttl_follows_rfc2308_as_dnspython() -> None:
    # The SOA takes its MINIMUM; later records take the last TTL written (RFC 1035 §5.1).
    zone = read_zone_text(
        "$ORIGIN ex.\n@ IN SOA ns hm 1 2 3 4 900\nns 600 IN A 192.0.2.1\nwww IN A 192.0.2.2\n"
    )
    assert [r.ttl for r in zone.records] == [900, 600, 600]


def test_generate_makes_one_record_per_step_all_at_its_line() -> None:
    zone = read_zone_text(HEAD + "$GENERATE 1-10 host$ A 192.0.2.$\nafter A 192.0.2.99\n")
    assert len(zone.records) == 11
    assert zone.records[0].to_text() == "host1.ex. 300 IN A 192.0.2.1"
    assert zone.records[9].to_text() == "host10.ex. 300 IN A 192.0.2.10"
    assert {zone.where_of(r) for r in zone.records[:10]} == {"<text>:3"}
    assert zone.where_of(zone.records[10]) == "<text>:4"


def test_generate_with_step_and_modifiers() -> None:
    zone = read_zone_text(HEAD + "$GENERATE 0-20/10 h${1,3} CNAME t${0,2,x}\n")
    assert texts(zone) == [
        "h001.ex. 300 IN CNAME t00.ex.",
        "h011.ex. 300 IN CNAME t0a.ex.",
        "h021.ex. 300 IN CNAME t14.ex.",
    ]


def test_parentheses_comments_and_location_of_multiline_records() -> None:
    zone = read_zone_text(
        HEAD + "@ IN SOA ns1 hostmaster (\n"  # line 3
        "        2024010101 ; serial\n"
        "        7200 3600 ( 1209600 ) ; nested parentheses\n"
        "        300 )\n"
        'txt IN TXT ( "one"\n'  # line 7
        '             "two" )\n'
        "next IN A 192.0.2.1 ; line 9\n"
    )
    soa, txt, nxt = zone.records
    assert soa.to_text() == "ex. 300 IN SOA ns1.ex. hostmaster.ex. 2024010101 7200 3600 1209600 300"
    assert txt.to_text() == 'txt.ex. 300 IN TXT "one" "two"'
    assert [zone.where_of(r) for r in (soa, txt, nxt)] == ["<text>:3", "<text>:7", "<text>:9"]


def test_escapes_in_names_and_strings() -> None:
    zone = read_zone_text(
        HEAD
        + 'a\\.b TXT "quote \\" semi ; back \\\\ dec \\065" "" plain\n'
        + "sp\\032ace A 192.0.2.1\n"
        + "\\@\\$x CNAME a\\.b\n"
    )
    txt, space, odd = zone.records
    assert txt.name.labels == (b"a.b", b"ex", b"")
    assert txt.rdata.strings == (b'quote " semi ; back \\ dec A', b"", b"plain")  # type: ignore[attr-defined]
    assert space.name.labels[0] == b"sp ace"
    assert odd.name.labels[0] == b"@$x"
    assert odd.rdata.target == txt.name  # type: ignore[attr-defined]


def test_rfc3597_generic_rdata() -> None:
    zone = read_zone_text(
        HEAD + "u TYPE65534 \\# 3 abcdef\nk A \\# 4 C0000201\nz TYPE65280 \\# 0\n"
    )
    unknown, known, empty = zone.records
    assert unknown.rdtype == 65534
    assert unknown.rdata.data == b"\xab\xcd\xef"  # type: ignore[attr-defined]
    assert known.to_text() == "k.ex. 300 IN A 192.0.2.1"
    assert empty.rdtype == 65280 and empty.rdata.data == b""  # type: ignore[attr-defined]


def test_many_types_parse() -> None:
    zone = read_zone_file(EXAMPLE)
    types = {dns.rdatatype.to_text(r.rdata.rdtype) for r in zone.records}
    wanted = {"SOA", "NS", "A", "AAAA", "MX", "TXT", "CNAME", "DS", "SRV", "CAA", "TLSA"}
    assert wanted | {"SSHFP", "HTTPS", "SVCB", "NAPTR", "URI", "LOC"} <= types


def test_duplicates_dropped_keeping_the_first_and_its_line() -> None:
    zone = read_zone_text(
        HEAD + "a A 192.0.2.1\nb A 192.0.2.2\nA.EX. 600 IN A 192.0.2.1\na A 192.0.2.3\n"
    )
    assert texts(zone) == [
        "a.ex. 300 IN A 192.0.2.1",
        "b.ex. 300 IN A 192.0.2.2",
        "a.ex. 300 IN A 192.0.2.3",
    ]
    assert zone.where_of(zone.records[0]) == "<text>:3"
    assert zone.where_of(rec("a", 999, "A", "192.0.2.1")) == "<text>:3"  # TTL is not identity
    assert zone.where_of(rec("zz", 300, "A", "192.0.2.1")) is None


def test_every_rr_kept_even_where_dnspython_would_merge_or_refuse() -> None:
    # Two CNAMEs, CNAME beside data and two SOAs: the validator must see them all.
    zone = read_zone_text(
        HEAD
        + "@ SOA ns hm 1 2 3 4 5\n"
        + "@ SOA ns hm 2 2 3 4 5\n"
        + "w CNAME one\n"
        + "w CNAME two\n"
        + "w A 192.0.2.1\n"
    )
    assert [r.rdtype for r in zone.records] == [
        dns.rdatatype.SOA,
        dns.rdatatype.SOA,
        dns.rdatatype.CNAME,
        dns.rdatatype.CNAME,
        dns.rdatatype.A,
    ]


def test_owner_outside_origin_is_kept() -> None:
    zone = read_zone_text(HEAD + "in A 192.0.2.1\nelsewhere.test. A 192.0.2.2\n")
    assert [r.name for r in zone.records] == [name("in.ex."), name("elsewhere.test.")]


def test_crlf_and_bom() -> None:
    zone = read_zone_text("\ufeff$ORIGIN ex.\r\n$TTL 300\r\na A 192.0.2.1\r\nb A 192.0.2.2\r\n")
    assert texts(zone) == ["a.ex. 300 IN A 192.0.2.1", "b.ex. 300 IN A 192.0.2.2"]
    assert zone.where_of(zone.records[1]) == "<text>:4"


# --- origin -------------------------------------------------------------------------------


def test_origin_argument_wins_and_anchors_names_before_any_origin_line() -> None:
    zone = read_zone_text("www 300 IN A 192.0.2.1\n$ORIGIN ex.\nx 300 IN A 192.0.2.2\n", ROOT)
    assert zone.origin == ROOT
    assert [r.name for r in zone.records] == [name("www."), name("x.ex.")]


def test_origin_from_first_origin_line() -> None:
    zone = read_zone_text("$TTL 300\n; comment\n$ORIGIN ex.\n@ NS ns\n$ORIGIN other.\n")
    assert zone.origin == EX


def test_origin_from_absolute_soa_owner() -> None:
    zone = read_zone_text("$TTL 300\nex. IN SOA ns hm 1 2 3 4 5\nwww A 192.0.2.1\n")
    assert zone.origin == EX
    assert zone.records[1].name == name("www.ex.")


@pytest.mark.parametrize(
    "text",
    ["@ 300 IN SOA ns hm 1 2 3 4 5\n", "ex. 300 IN A 192.0.2.1\n", "", "$ORIGIN relative\n"],
)
def test_no_origin(text: str) -> None:
    e = error_of(text, "y.zone")
    assert (e.filename, e.line) == ("y.zone", None)
    assert e.reason == "no origin: give --origin or start the file with $ORIGIN"


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ("a A 1.2.3\n", 3, "A rdata '1.2.3' is malformed"),
        ("a A 192.0.2.1 extra\n", 3, "unexpected 'extra' after the end of the A rdata"),
        ("a MX 10\nb A 192.0.2.1\n", 3, "MX rdata '10' is malformed: expecting an identifier but"),
        ("@ SOA ns hm (\n 1 2\n 3 x 5 )\n", 5, "SOA rdata is malformed at 'x': DNS TTL"),
        ("a DS 1 13 2 zz\n", 3, "DS rdata is malformed at 'zz': Non-hexadecimal"),
        ("a TYPE65534 \\# 2 abc\n", 3, "TYPE65534 rdata is malformed at 'abc'"),
        ("ok A 192.0.2.1\na FOO 1\n", 4, "unknown RR type 'FOO'"),
        ("a CH A 192.0.2.1\n", 3, "class CH is not supported"),
        ("a 60 HS TXT x\n", 3, "class HS is not supported"),
        ("a 2147483648 A 192.0.2.1\n", 3, "TTL 2147483648 is outside 0..2147483647"),
        ("a 4294967296 A 192.0.2.1\n", 3, "TTL 4294967296 is outside 0..2147483647"),
        ("a -1 A 192.0.2.1\n", 3, "TTL -1 is outside 0..2147483647"),
        ("$TTL 2147483648\n\na A 192.0.2.1\n", 5, "TTL 2147483648 is outside"),
        ("$TTL x\n", 3, "$TTL: "),
        ("$GENERATE 1-x a A 192.0.2.1\n", 3, "$GENERATE: "),
        ("$FOO bar\n", 3, "unknown directive $FOO"),
        ('a TXT ( "x"\n', 3, "unbalanced parentheses"),
        ("a A 192.0.2.1 )\n", 3, "')' without a matching '('"),
        ("$INCLUDE\n", 3, "$INCLUDE needs a file name"),
        ('a TXT "x\nb A 192.0.2.1\n', 3, "newline in quoted string"),
        ("a" * 64 + " A 192.0.2.1\n", 3, "owner name '" + "a" * 37 + "...': A DNS label is > 63"),
        (".".join(["a" * 60] * 5) + " A 192.0.2.1\n", 3, "A DNS name is > 255 octets"),
        ("a\\999 A 192.0.2.1\n", 3, "owner name 'a\\999': An escaped code"),
    ],
)
def test_error_names_file_line_and_problem(body: str, line: int, reason: str) -> None:
    e = error_of(HEAD + body)
    assert (e.filename, e.line) == ("x.zone", line), str(e)
    assert reason in e.reason
    assert str(e).startswith(f"x.zone:{line}: ")


def test_missing_ttl() -> None:
    e = error_of("$ORIGIN ex.\na A 192.0.2.1\n")
    assert (e.line, e.reason) == (2, "the record has no TTL and no $TTL is in force")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.zone"
    with pytest.raises(ZoneFileError) as info:
        read_zone_file(missing)
    assert (info.value.filename, info.value.line) == (str(missing), None)
    assert "not found" in info.value.reason
    with pytest.raises(ZoneFileError) as info:
        read_zone_file(tmp_path)
    assert "cannot read" in info.value.reason


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.zone"
    path.write_bytes(b'$ORIGIN ex.\n$TTL 300\nx TXT "caf\xe9"\n')
    with pytest.raises(ZoneFileError) as info:
        read_zone_file(path)
    assert (info.value.filename, info.value.line) == (str(path), 3)
    assert "not UTF-8" in info.value.reason


# --- $INCLUDE -----------------------------------------------------------------------------


def test_include_relative_to_including_file_with_locations() -> None:
    main = DATA / "main.zone"
    hosts = DATA / "hosts" / "hosts.inc"
    zone = read_zone_file(main)
    where = {r.to_text(): zone.where_of(r) for r in zone.records}
    assert where == {
        "inc.test. 600 IN SOA ns1.inc.test. hostmaster.inc.test. 1 7200 3600 1209600 300": (
            f"{main}:4"
        ),
        "inc.test. 600 IN NS ns1.inc.test.": f"{main}:5",
        "ns1.inc.test. 600 IN A 192.0.2.1": f"{hosts}:2",
        # nested.inc's $TTL applies inside it only
        'nested.inc.test. 60 IN TXT "from nested.inc"': f"{DATA / 'hosts' / 'nested.inc'}:2",
        "www.inc.test. 600 IN A 192.0.2.2": f"{hosts}:4",
        "after.inc.test. 600 IN A 192.0.2.9": f"{main}:7",
        "sub.inc.test. 600 IN A 192.0.2.3": f"{DATA / 'hosts' / 'sub.inc'}:1",
        "mail.sub.inc.test. 600 IN A 192.0.2.4": f"{DATA / 'hosts' / 'sub.inc'}:2",
        "last.inc.test. 600 IN A 192.0.2.10": f"{main}:9",
    }
    assert list(where) == [r.to_text() for r in zone.records]  # file order


def test_include_missing_names_the_include_line(tmp_path: Path) -> None:
    main = tmp_path / "x.zone"
    main.write_text(HEAD + "a A 192.0.2.1\n$INCLUDE missing.zone\n")
    with pytest.raises(ZoneFileError) as info:
        read_zone_file(main)
    assert (info.value.filename, info.value.line) == (str(main), 4)
    assert info.value.reason == "$INCLUDE file 'missing.zone' not found"


def test_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.inc").write_text("; bad\nok A 192.0.2.1\nbad A 1.2.3\n")
    main = tmp_path / "x.zone"
    main.write_text(HEAD + "$INCLUDE sub/bad.inc\n")
    with pytest.raises(ZoneFileError) as info:
        read_zone_file(main)
    assert (info.value.filename, info.value.line) == (str(tmp_path / "sub" / "bad.inc"), 3)
    assert "A rdata '1.2.3' is malformed" in info.value.reason


def test_include_loop_refused(tmp_path: Path) -> None:
    (tmp_path / "a.zone").write_text(HEAD + "a A 192.0.2.1\n$INCLUDE b.inc\n")
    (tmp_path / "b.inc").write_text("b A 192.0.2.2\n$INCLUDE a.zone\n")
    with pytest.raises(ZoneFileError) as info:
        read_zone_file(tmp_path / "a.zone")
    assert (info.value.filename, info.value.line) == (str(tmp_path / "b.inc"), 2)
    assert "include loop" in info.value.reason


def test_include_depth_limited(tmp_path: Path) -> None:
    def chain(depth: int) -> Path:
        for i in range(depth):
            (tmp_path / f"{i}.inc").write_text(f"h{i} A 192.0.2.1\n$INCLUDE {i + 1}.inc\n")
        (tmp_path / f"{depth}.inc").write_text("end A 192.0.2.2\n")
        main = tmp_path / "main.zone"
        main.write_text(HEAD + "$INCLUDE 0.inc\n")
        return main

    # main.zone -> 0.inc -> ... -> d.inc nests d + 1 includes.
    assert len(read_zone_file(chain(MAX_INCLUDE_DEPTH - 1)).records) == MAX_INCLUDE_DEPTH
    with pytest.raises(ZoneFileError) as info:
        read_zone_file(chain(MAX_INCLUDE_DEPTH))
    assert info.value.filename == str(tmp_path / f"{MAX_INCLUDE_DEPTH - 1}.inc")
    assert info.value.line == 2
    assert "deeper than 20" in info.value.reason


# --- writing ------------------------------------------------------------------------------


def test_write_is_canonical() -> None:
    records = [
        rec("b.a", 300, "A", "192.0.2.2"),
        rec("@", 300, "NS", "ns.ex."),
        rec("*.w", 60, "TXT", '"x"'),
        rec("A", 300, "AAAA", "2001:db8::1"),
        rec("a", 300, "A", "192.0.2.1"),
        rec("@", 3600, "SOA", "ns hostmaster 1 7200 3600 1209600 300"),
        rec("x", 300, "CNAME", "ext.example.net."),
        rec("z.a", 300, "MX", "10 a"),
        rec("a", 300, "A", "192.0.2.1"),  # repeated
    ]
    assert write_zone_file(EX, records) == (
        "; zone ex. written by zonefan: 8 records\n"
        "$ORIGIN ex.\n"
        "@\t3600\tIN\tSOA\tns hostmaster 1 7200 3600 1209600 300\n"
        "@\t300\tIN\tNS\tns\n"
        "a\t300\tIN\tA\t192.0.2.1\n"
        "A\t300\tIN\tAAAA\t2001:db8::1\n"
        "b.a\t300\tIN\tA\t192.0.2.2\n"
        "z.a\t300\tIN\tMX\t10 a\n"
        '*.w\t60\tIN\tTXT\t"x"\n'
        "x\t300\tIN\tCNAME\text.example.net.\n"
    )


def test_write_puts_names_outside_the_zone_last() -> None:
    text = write_zone_file(EX, [rec("a.test.", 300, "A", "192.0.2.1"), rec("@", 300, "NS", "ns")])
    assert text.splitlines()[2:] == ["@\t300\tIN\tNS\tns", "a.test.\t300\tIN\tA\t192.0.2.1"]


def test_write_at_root_uses_absolute_names() -> None:
    records = [
        rec("@", 86400, "SOA", "a.root-servers.net. x.test. 1 2 3 4 5", ROOT),
        rec("test.", 172800, "NS", "ns.test.", ROOT),
        rec("ns.test.", 172800, "A", "192.0.2.53", ROOT),
    ]
    text = write_zone_file(ROOT, records)
    assert text.splitlines()[1:] == [
        "$ORIGIN .",
        "@\t86400\tIN\tSOA\ta.root-servers.net. x.test. 1 2 3 4 5",
        "test.\t172800\tIN\tNS\tns.test.",
        "ns.test.\t172800\tIN\tA\t192.0.2.53",
    ]
    assert contents(read_zone_text(text, ROOT)) == {(r.identity, r.ttl) for r in records}


def test_tricky_records_round_trip() -> None:
    source = read_zone_text(
        HEAD
        + '@ TXT "a \\"quoted\\" string" "semi;colon" "back\\\\slash" "" "\\255\\000"\n'
        + "a\\.b\\032c A 192.0.2.1\n"
        + "\\@\\$\\(\\)\\; TXT odd\n"
        + "u 5 TYPE65534 \\# 4 00ff10ab\n"
        + "e TYPE65280 \\# 0\n"
        + "g A \\# 4 c0000202\n"
        + "m MX 0 .\n"
        + "n NS @\n"
        + "s SVCB 1 . alpn=h2,h3 ipv4hint=192.0.2.1,192.0.2.2 mandatory=alpn\n"
        + 'c CAA 128 tbs "x;y"\n'
        + "out.test. A 192.0.2.3\n"
        + "$ORIGIN sub.ex.\n@ NS ns.sub.ex.\n"
    )
    text = write_zone_file(EX, source.records)
    again = read_zone_text(text)
    assert again.origin == EX
    assert contents(again) == contents(source)
    assert "TYPE65534" in text


def test_round_trip_example_zone() -> None:
    source = read_zone_file(EXAMPLE)
    again = read_zone_text(write_zone_file(source.origin, source.records))
    assert again.origin == source.origin == name("example.test.")
    assert contents(again) == contents(source)
    assert len(again.records) == len(source.records)


@pytest.fixture(scope="module")
def root_zone() -> ParsedZone:
    return read_zone_file(shared_file("root.zone"), ROOT)


@pytest.fixture(scope="module")
def root_text(root_zone: ParsedZone) -> str:
    return write_zone_file(ROOT, root_zone.records)


def test_round_trip_root_zone(root_zone: ParsedZone, root_text: str) -> None:
    assert len(root_zone.records) == 19597
    again = read_zone_text(root_text, ROOT)
    assert contents(again) == contents(root_zone)


# --- independent tools --------------------------------------------------------------------


def run_checkers(origin: str, path: Path) -> None:
    """named-checkzone and kzonecheck must both accept the file."""
    # -i local: integrity checks on in-zone data only, so named-checkzone does no DNS lookups.
    named = [require_tool("named-checkzone"), "-i", "local", origin, str(path)]
    knot = [require_tool("kzonecheck"), "-o", origin, str(path)]
    for command in (named, knot):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"


@pytest.mark.external
def test_example_zone_source_accepted_by_checkers() -> None:
    run_checkers("example.test", EXAMPLE)


@pytest.mark.external
def test_exported_example_zone_accepted_by_checkers(tmp_path: Path) -> None:
    source = read_zone_file(EXAMPLE)
    path = tmp_path / "example.test.zone"
    path.write_text(write_zone_file(source.origin, source.records))
    run_checkers("example.test", path)


@pytest.mark.external
def test_exported_tricky_zone_accepted_by_checkers(tmp_path: Path) -> None:
    source = read_zone_text(
        HEAD
        + "@ SOA ns hm 1 7200 3600 1209600 300\n@ NS ns\nns A 192.0.2.1\n"
        + '@ TXT "a \\"quoted\\" string" "semi;colon" "\\255"\n'
        + "a\\.b\\032c A 192.0.2.1\n"
        + "u TYPE65534 \\# 4 00ff10ab\n"
    )
    path = tmp_path / "ex.zone"
    path.write_text(write_zone_file(EX, source.records))
    run_checkers("ex", path)


@pytest.mark.external
def test_exported_root_zone_accepted_by_checkers(root_text: str, tmp_path: Path) -> None:
    path = tmp_path / "root.zone"
    path.write_text(root_text)
    run_checkers(".", path)


# --- the tokenizer ------------------------------------------------------------------------

TRICKY = (
    "$ORIGIN ex.\n"
    "\n"
    "   \n"
    "@ IN SOA ns hm ( 1 ; serial\n"
    "   2 3\t4\n"
    "   5 )\n"
    'a\t300 TXT "q \\" ;" x\\ y"z" ( "p"\n'
    ' "q" ) ;c\n'
    "  b\\.c A 192.0.2.1;tail\n"
    "end A \\# 4 c0000201"
)


@pytest.mark.parametrize(("want_leading", "want_comment"), [(False, False), (True, True)])
def test_source_tokenizer_matches_dnspython(want_leading: bool, want_comment: bool) -> None:
    ours = _SourceTokenizer(TRICKY, "t")
    theirs = dns.tokenizer.Tokenizer(TRICKY, "t")
    while True:
        a = ours.get(want_leading, want_comment)
        b = theirs.get(want_leading, want_comment)
        assert (a.ttype, a.value, a.has_escape) == (b.ttype, b.value, b.has_escape)
        if b.is_eof():
            break
    assert ours.line_number == theirs.line_number == TRICKY.count("\n") + 1
