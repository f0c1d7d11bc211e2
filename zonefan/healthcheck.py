"""``zonefan healthcheck``: is a DNS server answering at an address? One query, exit 0 or 1.

For container health checks and monitoring, where no dig is installed. Any well-formed DNS
reply to the query counts (REFUSED too: the server is up, it just does not serve the root
zone); silence, an ICMP refusal or garbage do not.
"""

from __future__ import annotations

import json
import secrets
import socket
import time

import click
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from settings import parse_address
from zonefan.options import json_option

QUESTION = "."  # the root's SOA: a question every server answers somehow


@click.command("healthcheck")
@click.argument("address", metavar="ADDR:PORT")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="Seconds to wait for the reply.",
)
@json_option
def healthcheck_cmd(address: str, timeout: float, as_json: bool) -> None:
    """Exit 0 when a DNS server answers at ADDR:PORT, else 1 (one query over UDP).

    ADDR:PORT as `serve --listen` takes it, e.g. 127.0.0.1:5353 or [::1]:5353 (port 53
    when none is written). Any well-formed reply counts, REFUSED included: the question
    is the root's SOA.

    \b
    Docker: HEALTHCHECK CMD ["zonefan", "healthcheck", "127.0.0.1:5353"]"""
    try:
        where = parse_address(address)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="ADDR:PORT") from e
    try:
        rcode, elapsed = probe(where.host, where.port, timeout)
    except OSError as e:
        raise click.ClickException(f"{where} is not answering DNS: {e}") from e
    except dns.exception.DNSException as e:
        raise click.ClickException(f"{where} sent a reply that is not well-formed DNS: {e}") from e
    text = dns.rcode.to_text(rcode)
    if as_json:
        data = {"server": str(where), "rcode": text, "ms": round(elapsed * 1000, 1)}
        click.echo(json.dumps(data))
        return
    click.echo(f"{where} answers DNS ({QUESTION} SOA: {text}, {elapsed * 1000:.1f} ms)")


def probe(host: str, port: int, timeout: float) -> tuple[dns.rcode.Rcode, float]:
    """Ask ``host``:``port`` for the root SOA over UDP; the reply's RCODE and the seconds it
    took. Raises OSError (no reply, port refused) or a DNSException (not a reply to it)."""
    query = dns.message.make_query(QUESTION, dns.rdatatype.SOA, use_edns=0)
    query.id = secrets.randbelow(1 << 16)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))  # only replies from there; an ICMP refusal is reported
        start = time.monotonic()
        sock.send(query.to_wire())
        while True:
            try:
                wire = sock.recv(65535)
            except TimeoutError:
                raise TimeoutError(f"no reply within {timeout:g} s") from None
            except ConnectionRefusedError:
                raise ConnectionRefusedError("nothing listens on that UDP port") from None
            reply = dns.message.from_wire(wire)  # raises on anything malformed
            if query.is_response(reply):
                return reply.rcode(), time.monotonic() - start
            # A late reply to someone else's query (e.g. a reused port): keep waiting.
            sock.settimeout(max(timeout - (time.monotonic() - start), 0.001))
