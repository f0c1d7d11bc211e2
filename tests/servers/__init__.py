"""Real DNS servers started from pytest, one module per server: ``zonefan serve``
(zonefan_server), NSD (nsd), a validating unbound (unbound), Knot (knot) and BIND (bind) as
secondaries of zonefan (their shared part in secondary), on the subprocess handling they
all share (process). pdns_server and moto are in tests/pdns.py and tests/moto.py.

Each runs as a subprocess on 127.0.0.1 (and optionally ::1) with an ephemeral port and its
own files in a temporary directory, is ready once it answers a query, and is stopped by its
PID: SIGTERM, then SIGKILL after a grace period. Nothing is shared with a system daemon.
"""

from tests.servers.bind import BindSecondary, named_conf_head, named_control, rndc_command
from tests.servers.knot import KnotSecondary, knot_conf_head
from tests.servers.nsd import NsdSecondary, NsdServer, nsd_server_clause
from tests.servers.process import (
    CLI_TIMEOUT,
    PORT_ATTEMPTS,
    QUERY_TIMEOUT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    _clean_env,
    _Process,
    ipv6_loopback_available,
    make_query,
    query_message,
    start_all,
    stop_process,
)
from tests.servers.secondary import XfrKey, _Controlled, _Secondary, transfer_config
from tests.servers.unbound import UnboundServer
from tests.servers.zonefan_server import ZonefanServer, run_cli, trust_anchor

__all__ = [
    "CLI_TIMEOUT",
    "PORT_ATTEMPTS",
    "QUERY_TIMEOUT",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "BindSecondary",
    "KnotSecondary",
    "NsdSecondary",
    "NsdServer",
    "UnboundServer",
    "XfrKey",
    "ZonefanServer",
    "_Controlled",
    "_Process",
    "_Secondary",
    "_clean_env",
    "ipv6_loopback_available",
    "knot_conf_head",
    "make_query",
    "named_conf_head",
    "named_control",
    "nsd_server_clause",
    "query_message",
    "rndc_command",
    "run_cli",
    "start_all",
    "stop_process",
    "transfer_config",
    "trust_anchor",
]
