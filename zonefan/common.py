"""What the CLI commands share: options, the store and editor they open, names."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import click
import dns.exception
import dns.name

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.catalog import sync_catalog
from nameserver.edit.editor import Author, ZoneEditor
from nameserver.edit.updatepolicy import UpdatePolicy, policies_from_config
from nameserver.errors import NameserverError, StoreMissingError
from nameserver.progress import Progress
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions
from nameserver.transfer.acl import TransferAcl, parse_secondaries
from nameserver.transfer.tsig import TsigKey, keyring
from settings import SettingsError, parse_name, parse_tsig_keys
from signer.errors import SignerError
from signer.policy import PolicySource, policy_from_mapping
from zonefan.options import F, config_of
from zonefan.settings import key_dir


def author_options(f: F) -> F:
    """``--author`` and ``--message``: who and why, kept in the journal."""
    f = click.option("--message", "-m", default="", help="Why: kept in the zone's history.")(f)
    return click.option(
        "--author",
        envvar="ZONEFAN_AUTHOR",
        default=None,
        help="Who makes the change (default: user@host). Env: ZONEFAN_AUTHOR.",
    )(f)


def author_of(author: str | None, message: str) -> Author:
    """The journal's author: the one given, else user@host."""
    return Author(author or f"{getpass.getuser()}@{socket.gethostname()}", message)


@contextmanager
def open_store(
    ctx: click.Context, *, create: bool = False, read_only: bool = False
) -> Iterator[Store]:
    """The store named by --db, with nameserver errors turned into clean CLI errors.

    ``create``: make the store when there is none (only commands that can fill it);
    ``read_only``: for commands that only look (never creates one, refuses writes)."""
    try:
        store = Store(ctx.obj, create=create, read_only=read_only)
    except StoreMissingError as e:
        raise click.ClickException(
            f"{e}; import a zone first (zonefan zone import FILE) or give --db / ZONEFAN_DB"
        ) from e
    except NameserverError as e:
        raise click.ClickException(str(e)) from e
    try:
        yield store
    except (NameserverError, SignerError) as e:
        raise click.ClickException(str(e)) from e
    finally:
        store.close()


def dnssec_factory(
    ctx: click.Context, progress: Progress | None = None
) -> Callable[[Store, ZoneVersions | None], DnssecManager]:
    """Makes DNSSEC managers with the key directory and policies from settings (read now,
    so a long-running ``serve`` makes managers in other threads without the context);
    ``progress`` is told how far each signing pass is."""
    config = config_of(ctx)
    # Where a conflicting policy's fix goes: the file in use, absolute so it is unambiguous.
    origin = config.source.name or "zonefan.toml"
    config_file = str(Path(origin).absolute())
    policies = {}
    sources = {}
    try:
        directory = key_dir(config, ctx.obj)
        tables = config.table("policy")
        for name, table in tables.tables() if tables is not None else ():
            policies[name] = policy_from_mapping(table.data, f"{origin} [policy.{name}]")
            # Lifetimes the table leaves out follow each zone; those it sets are checked.
            sets_lifetimes = any(k in table for k in ("rrsig-validity", "rrsig-refresh"))
            sources[name] = PolicySource(name, config_file, sets_lifetimes)
    except (SettingsError, SignerError) as e:
        raise click.ClickException(str(e)) from e

    def make(store: Store, versions: ZoneVersions | None = None) -> DnssecManager:
        return DnssecManager(
            store, directory, policies, versions=versions, sources=sources, progress=progress
        )

    return make


def transfer_settings(
    ctx: click.Context, labelled: Mapping[str, TsigKey]
) -> tuple[dict[dns.name.Name, TsigKey], TransferAcl]:
    """The keyring of ``labelled`` (:func:`config_keys`) and the secondaries allowed to
    transfer (``[[secondary]]``); errors name the file and the key path."""
    keys = keyring(labelled)
    try:
        acl = parse_secondaries(config_of(ctx).entries("secondary"), keys)
    except SettingsError as e:
        raise click.ClickException(str(e)) from e
    return keys, acl


def config_keys(ctx: click.Context) -> dict[str, TsigKey]:
    """The ``[key.NAME]`` tables of the config file, by NAME."""
    try:
        return parse_tsig_keys(config_of(ctx).table("key"))
    except SettingsError as e:
        raise click.ClickException(str(e)) from e


def update_policies(ctx: click.Context) -> dict[dns.name.Name, UpdatePolicy]:
    """RFC 2136 update policies: ``update-policy`` lists in ``[zone."NAME"]`` tables."""
    config = config_of(ctx)
    try:
        return policies_from_config(config.data)
    except NameserverError as e:
        raise click.ClickException(f"{config.source.name or 'zonefan.toml'}: {e}") from e


def catalog_zone(ctx: click.Context) -> dns.name.Name | None:
    """The catalog zone (RFC 9432) named by ``catalog-zone`` in the config, if any."""
    try:
        return config_of(ctx).optional("catalog-zone", parse_name)
    except SettingsError as e:
        raise click.ClickException(str(e)) from e


def sync_catalog_zone(
    ctx: click.Context, editor: ZoneEditor, why: str, quiet: bool = False
) -> int | None:
    """Bring the catalog zone in step with the store's zones (when one is configured); the
    catalog's new serial, None when it did not change. ``quiet``: say nothing (--json)."""
    catalog = catalog_zone(ctx)
    if catalog is None:
        return None
    change = sync_catalog(editor, catalog, author_of(None, f"catalog: {why}"))
    if change is None:
        return None
    if not quiet:
        click.echo(f"catalog {catalog}: serial {change.serial_after}", err=True)
    return change.serial_after


def dnssec_manager(
    ctx: click.Context, store: Store, progress: Progress | None = None
) -> DnssecManager:
    """The DNSSEC manager for ``store``, with the key directory and policies from settings."""
    return dnssec_factory(ctx, progress)(store, None)


def editor_for(ctx: click.Context, store: Store, progress: Progress | None = None) -> ZoneEditor:
    """An editor that signs signed zones in every change."""
    return dnssec_manager(ctx, store, progress).editor()
