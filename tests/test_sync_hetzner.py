"""The ``hetzner`` target against a strict emulator of the Hetzner Cloud API's DNS
(tests/emulators/hetzner.py): the emulator refusing what the reference does not allow, the
codec, the target's pushes, rate limits and failures, and the settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.emulators.hetzner import HetznerEmulator

TOKEN = "hz-secret-token-7f3a9c"


class Clock:
    """The emulator's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emulator() -> Iterator[HetznerEmulator]:
    emu = HetznerEmulator(token=TOKEN).start()
    try:
        yield emu
    finally:
        emu.stop()


async def call(
    emu: HetznerEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str = TOKEN,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            emu.url + path,
            json=body if raw is None else None,
            data=raw,
            headers=headers,
        ) as response,
    ):
        return response.status, await response.json(), dict(response.headers)


def error_of(payload: Any) -> tuple[str, str]:
    error = payload["error"]
    assert set(error) == {"code", "message", "details"}
    return error["code"], error["message"]


# -- the emulator refuses what the reference does not allow ----------------------------------


async def test_emulator_requires_the_bearer_token(emulator: HetznerEmulator) -> None:
    status, payload, _ = await call(emulator, "GET", "/zones", token="wrong")
    assert status == 401
    assert error_of(payload)[0] == "unauthorized"
    status, payload, _ = await call(emulator, "GET", "/zones")
    assert status == 200
    assert payload["zones"] == []


async def test_emulator_creates_a_zone_with_its_own_soa_and_ns(emulator: HetznerEmulator) -> None:
    status, payload, _ = await call(
        emulator,
        "POST",
        "/zones",
        {
            "name": "example.com",
            "mode": "primary",
            "rrsets": [
                {"name": "www", "type": "A", "ttl": 300, "records": [{"value": "192.0.2.1"}]}
            ],
        },
    )
    assert status == 201, payload
    assert payload["action"]["command"] == "create_zone"
    zone_id = payload["zone"]["id"]
    status, payload, _ = await call(emulator, "GET", f"/zones/{zone_id}/rrsets")
    ids = sorted(r["id"] for r in payload["rrsets"])
    assert ids == ["@/NS", "@/SOA", "www/A"]
    status, payload, _ = await call(
        emulator, "POST", "/zones", {"name": "example.com", "mode": "primary"}
    )
    assert status == 409 and error_of(payload)[0] == "uniqueness_error"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "WWW", "type": "A", "records": [{"value": "192.0.2.1"}]}, "name"),
        ({"name": "www.example.com", "type": "A", "records": [{"value": "192.0.2.1"}]}, "name"),
        ({"name": "www.", "type": "A", "records": [{"value": "192.0.2.1"}]}, "name"),
        ({"name": "www", "type": "SPF", "records": [{"value": '"v=spf1"'}]}, "type"),
        ({"name": "@", "type": "SOA", "records": [{"value": "a. b. 1 2 3 4 5"}]}, "type"),
        ({"name": "www", "type": "A", "ttl": 30, "records": [{"value": "192.0.2.1"}]}, "ttl"),
        ({"name": "www", "type": "A", "records": []}, "records"),
        (
            {
                "name": "www",
                "type": "A",
                "records": [{"value": "192.0.2.1"}, {"value": "192.0.2.1"}],
            },
            "records",
        ),
        (
            {"name": "www", "type": "A", "records": [{"value": "not-an-address"}]},
            "records[0].value",
        ),
        ({"name": "t", "type": "TXT", "records": [{"value": "unquoted text"}]}, "records[0].value"),
        (
            {"name": "t", "type": "TXT", "records": [{"value": '"' + "x" * 256 + '"'}]},
            "records[0].value",
        ),
        (
            {"name": "m", "type": "MX", "records": [{"value": "10 mail.example.com"}]},
            "records[0].value",
        ),
        ({"name": "www", "type": "A", "records": [{"value": "192.0.2.1"}], "prio": 1}, "prio"),
        (
            {"name": "www", "type": "A", "records": [{"value": "192.0.2.1", "id": 1}]},
            "records[0].id",
        ),
        ({"type": "A", "records": [{"value": "192.0.2.1"}]}, "name"),
    ],
)
async def test_emulator_rejects_bad_rrsets(
    emulator: HetznerEmulator, body: dict[str, Any], field: str
) -> None:
    emulator.add_zone("example.com")
    status, payload, _ = await call(emulator, "POST", "/zones/example.com/rrsets", body)
    assert status == 400, payload
    assert error_of(payload)[0] == "invalid_input"
    assert payload["error"]["details"]["fields"][0]["name"] == field
    assert set(emulator.rrsets("example.com")) == {("@", "SOA"), ("@", "NS")}


async def test_emulator_rejects_bad_json_and_unknown_routes(emulator: HetznerEmulator) -> None:
    emulator.add_zone("example.com")
    status, payload, _ = await call(emulator, "POST", "/zones/example.com/rrsets", raw=b"{nope")
    assert status == 400 and error_of(payload)[0] == "json_error"
    status, payload, _ = await call(emulator, "GET", "/zones/example.org/rrsets")
    assert status == 404 and error_of(payload)[0] == "not_found"
    status, payload, _ = await call(emulator, "PUT", "/zones/example.com/rrsets/www/A", {})
    assert status == 404 and error_of(payload)[0] == "not_found"
    status, payload, _ = await call(emulator, "DELETE", "/zones/example.com/rrsets/@/SOA")
    assert status == 400 and error_of(payload)[0] == "invalid_input"


async def test_emulator_paginates_and_refuses_pages_above_the_maximum(
    emulator: HetznerEmulator,
) -> None:
    emulator.add_zone("example.com")
    for i in range(60):
        emulator.put_rrset("example.com", f"h{i}", "A", [f"192.0.2.{i}"], 300)
    status, payload, _ = await call(emulator, "GET", "/zones/example.com/rrsets?per_page=51")
    assert status == 400 and payload["error"]["details"]["fields"][0]["name"] == "per_page"
    seen: list[str] = []
    page: int | None = 1
    while page is not None:
        status, payload, _ = await call(
            emulator, "GET", f"/zones/example.com/rrsets?per_page=50&page={page}"
        )
        assert status == 200
        seen += [r["id"] for r in payload["rrsets"]]
        page = payload["meta"]["pagination"]["next_page"]
    assert len(seen) == len(set(seen)) == 62
    status, payload, _ = await call(emulator, "GET", "/zones/example.com/rrsets")
    assert len(payload["rrsets"]) == 25  # the documented default page size


async def test_emulator_rate_limit_answers_429_with_the_documented_headers() -> None:
    clock = Clock()
    with HetznerEmulator(token=TOKEN, rate_limit=3, rate_window=3.0, clock=clock) as emu:
        for remaining in (2, 1, 0):
            status, _, headers = await call(emu, "GET", "/zones")
            assert status == 200
            assert headers["RateLimit-Limit"] == "3"
            assert headers["RateLimit-Remaining"] == str(remaining)
        status, payload, headers = await call(emu, "GET", "/zones")
        assert status == 429
        assert error_of(payload)[0] == "rate_limit_exceeded"
        assert headers["RateLimit-Remaining"] == "0"
        # A UNIX time: the whole budget back three seconds from now at one a second.
        assert int(headers["RateLimit-Reset"]) == int(clock.now) + 3
        clock.now += 1.0  # one request a second comes back
        status, _, _ = await call(emu, "GET", "/zones")
        assert status == 200
        status, _, _ = await call(emu, "GET", "/zones")
        assert status == 429


async def test_emulator_actions_run_until_read_then_succeed(emulator: HetznerEmulator) -> None:
    emulator.add_zone("example.com")
    status, payload, _ = await call(
        emulator,
        "POST",
        "/zones/example.com/rrsets",
        {"name": "www", "type": "A", "records": [{"value": "192.0.2.1"}]},
    )
    action = payload["action"]
    assert action["status"] == "running"
    status, payload, _ = await call(emulator, "GET", f"/actions?id={action['id']}")
    assert payload["actions"][0]["status"] == "running"
    status, payload, _ = await call(emulator, "GET", f"/actions?id={action['id']}")
    assert payload["actions"][0]["status"] == "success"
    status, payload, _ = await call(emulator, "GET", "/actions")
    assert status == 400 and payload["error"]["details"]["fields"][0]["name"] == "id"
