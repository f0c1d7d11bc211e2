"""The one settings grammar every zonefan package reads its configuration with.

Addresses (``ADDR``, ``ADDR:PORT``, ``[V6]:PORT``, ``ADDR@PORT``), durations (seconds, or
``"90d"``, ``"1d12h"``, ``"1.5h"``), TSIG keys (``[key.NAME]`` with ``secret``,
``secret-file`` or ``secret-env``), credentials and tables whose every key is checked, with
errors that name the file and the key path (``target.pdns.dns``, ``secondary#2.address``).

A leaf package: it imports no other zonefan package, so the signer, the nameserver and the
sync sidecar all parse the same text the same way.
"""

from settings.errors import SettingsError
from settings.grammar import (
    Address,
    Network,
    format_duration,
    parse_address,
    parse_duration,
    parse_name,
    parse_names,
    parse_network,
    parse_seconds,
    parse_size,
)
from settings.secrets import TSIG_ALGORITHMS, TsigKey, parse_tsig_keys
from settings.table import Source, Table, load_toml

__all__ = [
    "TSIG_ALGORITHMS",
    "Address",
    "Network",
    "SettingsError",
    "Source",
    "Table",
    "TsigKey",
    "format_duration",
    "load_toml",
    "parse_address",
    "parse_duration",
    "parse_name",
    "parse_names",
    "parse_network",
    "parse_seconds",
    "parse_size",
    "parse_tsig_keys",
]
