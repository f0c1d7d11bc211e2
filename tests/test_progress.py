"""Progress of long work: shown on a terminal once the work takes over a second, ending
with a line that says what was done and how long it took; nothing for a pipe or a quick
command."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import dns.name
import pytest

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author
from nameserver.store.store import Store
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_text
from sync.providers.testkit.faults import FaultProxy
from tests.clock import FakeClock
from tests.pdns import PdnsServer
from tests.servers import ZonefanServer, _clean_env, run_cli, transfer_config
from tests.test_sync_e2e import KEY
from tests.tools import require_tool, write_private
from tests.wait import wait_until
from zonefan import progress as progress_module
from zonefan.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_within_the_first_second_nor_off_a_terminal() -> None:
    clock = FakeClock(100.0)
    shown = Terminal()
    with Progress("import z", shown, clock, tick=None) as progress:
        progress.phase("reading")
        progress.count(10, 100)
        clock.now += 0.9
        progress.count(50, 100)
        progress.finish("done")
    assert shown.getvalue() == ""
    piped = io.StringIO()  # not a terminal
    with Progress("import z", piped, clock, tick=None) as progress:
        clock.now += 5
        progress.phase("reading")
        progress.count(50, 100)
        progress.finish("done")
    assert piped.getvalue() == ""


def test_a_long_step_is_drawn_and_ends_with_the_time_taken() -> None:
    clock = FakeClock(100.0)
    out = Terminal()
    with Progress("sign z.", out, clock, tick=None) as progress:
        progress.phase("preparing")
        clock.now += 1.5
        progress.signing(4096, 10000)
        clock.now += 0.05
        progress.signing(8192, 10000)  # within the redraw interval: not drawn
        clock.now += 0.5
        progress.signing(10000, 10000)
        progress.finish("signed, serial 7")
    text = out.getvalue()
    assert "\rsign z.: signing 4,096/10,000 (40%) 1.5 s" in text
    assert "8,192" not in text
    assert "sign z.: storing" in text
    assert text.endswith("sign z.: signed, serial 7 in 2.0 s\n")


def test_a_step_that_only_waits_still_shows_its_time_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress_module, "DELAY", 0.0)
    out = Terminal()
    with Progress("sync apply", out, tick=0.01) as progress:
        progress.phase("pushing to 1 target(s)")
        # Nothing calls the progress now (an await on a provider); the ticker redraws.
        wait_until(lambda: out.getvalue().count("\rsync apply: pushing") >= 3, 10)
        progress.finish("1 of 1 push(es) converged")
    assert (
        out.getvalue().endswith("s\n")
        and "sync apply: 1 of 1 push(es) converged in " in out.getvalue()
    )


def test_signing_reports_every_signature_it_makes(tmp_path: Path) -> None:
    names = "\n".join(f"h{i} A 192.0.2.{i % 250 + 1}" for i in range(9000))
    head = "$ORIGIN p.test.\n$TTL 3600\n@ SOA ns h 1 7200 3600 1209600 300\n@ NS ns\n"
    text = f"{head}ns A 192.0.2.1\n{names}\n"
    calls: list[tuple[int, int | None]] = []
    parsed = read_zone_text(text, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(4096, None), (8192, None)]  # every 4096 of the 9004 records read
    with Store(tmp_path / "z.db") as store:
        seen: list[tuple[int, int | None]] = []
        manager = DnssecManager(store, tmp_path / "keys", progress=lambda d, t: seen.append((d, t)))
        editor = manager.editor()
        editor.create_or_replace(
            editor.plan_import(parsed.origin, parsed.records, Author("t")), SerialPolicy.INCREMENT
        )
        manager.enable(dns.name.from_text("p.test."), Author("t"))
    done = [d for d, _ in seen]
    assert done == sorted(done) and len(seen) > 1
    assert seen[-1][0] == seen[-1][1]  # the last report: all of them


def _zone_file(tmp_path: Path, origin: str, names: int) -> Path:
    lines = [
        f"$ORIGIN {origin}",
        "$TTL 3600",
        "@ SOA ns hostmaster 1 7200 3600 1209600 300",
        "@ NS ns",
        "ns A 192.0.2.1",
    ]
    lines += [f"h{i} A 192.0.2.{i % 250 + 1}" for i in range(names)]
    zone = tmp_path / f"{origin}zone"
    zone.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return zone


def _in_terminal(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``zonefan ARGS`` with stderr on a pseudo-terminal, as a user at a shell does;
    (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the slave side closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "zonefan.cli", *args],
            stdout=subprocess.PIPE,
            stderr=slave,
            cwd=cwd,
            env={**_clean_env(), **(env or {})},
            timeout=300,
            check=False,
        )
    finally:
        os.close(slave)
    reader.join(10)
    os.close(master)
    return done.returncode, done.stdout.decode(), b"".join(shown).decode()


def test_import_and_sign_of_a_large_zone_show_progress_on_a_terminal(tmp_path: Path) -> None:
    zone = _zone_file(tmp_path, "big.test.", 40000)
    db = str(tmp_path / "z.db")
    code, out, shown = _in_terminal(["--db", db, "zone", "import", str(zone)], tmp_path)
    assert code == 0, shown
    assert "zone big.test.: created with 40003 records" in out
    assert "\rimport big.test.zone: " in shown  # a step (reading, checking, storing) drawn
    assert "import big.test.zone: zone big.test. serial 1 in " in shown
    code, out, shown = _in_terminal(["--db", db, "zone", "sign", "big.test"], tmp_path)
    assert code == 0, shown
    assert "sign big.test.: signing " in shown and "/80,00" in shown  # RRsets + NSECs
    assert "sign big.test.: signed, serial 2 in " in shown
    # The same work with stderr to a pipe (a script, a log): nothing but the result.
    again = subprocess.run(
        [sys.executable, "-m", "zonefan.cli", "--db", db, "zone", "sign", "big.test"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(),
        timeout=300,
        check=False,
    )
    assert again.returncode == 0 and again.stderr == ""


@pytest.mark.external
def test_an_initial_push_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    """The provider takes 1.5 s to create the zone (a proxy holds the POST): the line shows
    while `sync apply` waits, and the push ends with its time."""
    require_tool("pdns_server")
    db = tmp_path / "z.db"
    run_cli(db, "zone", "import", str(_zone_file(tmp_path, "push.test.", 100)))
    config = write_private(tmp_path / "zonefan.toml", transfer_config(KEY))
    with (
        ZonefanServer(
            tmp_path / "primary", db=db, probe_name="push.test.", config=config
        ) as primary,
        PdnsServer(tmp_path / "pdns") as pdns,
    ):
        proxy = FaultProxy(pdns.api_url, hang_seconds=1.5).start()
        try:
            proxy.inject("slow", method="POST")
            sync = tmp_path / "sync.toml"
            sync.write_text(
                f"""state = "sync.db"
[primary]
address = "127.0.0.1:{primary.port}"
key = "{KEY.name}"
zones = ["push.test"]
[key.{KEY.name}]
secret-env = "SECRET"
[target.pdns]
type = "powerdns"
url = "{proxy.url}"
api-key-env = "PDNS_KEY"
signed-zones = "refuse"
""",
                encoding="utf-8",
            )
            env = {"SECRET": KEY.secret, "PDNS_KEY": pdns.api_key}
            args = ["sync", "apply", "--config", str(sync)]
            code, out, shown = _in_terminal(args, tmp_path, env)
        finally:
            proxy.stop()
    assert code == 0, out + shown
    assert "push.test. at pdns: ok" in out
    assert "sync apply: pushing to 1 target(s)" in shown
    assert "sync apply: 1 of 1 push(es) converged in " in shown
