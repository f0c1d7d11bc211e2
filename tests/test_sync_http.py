"""The HTTP client base every provider uses, against a scripted server on 127.0.0.1: what
it waits out and retries, what it hands to the engine, what it shares per account, and that
no credential reaches a log line or an error. Time is a fake clock its sleeps advance."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from sync.errors import TargetRateLimitedError, TargetRejectedError, TargetUnavailableError
from sync.providers.capabilities import RateBudget
from sync.providers.http import MAX_WAIT, Account, HttpClient, Response
from tests.clock import FakeClock

SECRET = "s3cr3t-token-value"
Reply = tuple[int, dict[str, str], Any]


@asynccontextmanager
async def server(script: list[Reply]) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """Answers each request with the next reply of ``script`` (the last one repeats)."""
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        status, headers, body = script[min(len(seen), len(script)) - 1]
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/api", seen
    finally:
        await runner.cleanup()


def client(url: str, clock: FakeClock, account: Account | None = None, **kw: Any) -> HttpClient:
    return HttpClient(
        "t",
        url,
        headers={"Authorization": f"Bearer {SECRET}"},
        account=account or Account(clock=clock, sleep=clock.sleep),
        secrets=(SECRET,),
        sleep=clock.sleep,
        rng=lambda: 0.5,
        **kw,
    )


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(scenario())


def test_429_is_waited_out_on_the_account_and_retried() -> None:
    clock = FakeClock(1000.0)

    async def scenario() -> tuple[Response, int]:
        script: list[Reply] = [
            (429, {"Retry-After": "2"}, {"error": "slow"}),
            (429, {"Retry-After": "3"}, {"error": "slow"}),
            (200, {}, {"ok": 1}),
        ]
        async with server(script) as (url, seen):
            http = client(url, clock)
            try:
                response = await http.request("POST", "zones", json={"a": 1})
            finally:
                await http.close()
            return response, len(seen)

    response, count = run(scenario)
    assert response.json() == {"ok": 1} and count == 3
    assert clock.waits == [2.0, 3.0]


def test_a_long_retry_after_goes_to_the_engine_and_holds_the_account() -> None:
    clock = FakeClock(1000.0)
    account = Account(clock=clock, sleep=clock.sleep)

    async def scenario() -> TargetRateLimitedError:
        script: list[Reply] = [
            (429, {"Retry-After": "120"}, {"error": "come back later"}),
            (200, {}, {}),
        ]
        async with server(script) as (url, seen):
            http = client(url, clock, account)
            with pytest.raises(TargetRateLimitedError) as caught:
                await http.request("GET", "zones")
            # Another client of the same account sends nothing while the hold lasts: the
            # engine gets the wait, no request task sleeps through it.
            other = client(url, clock, account)
            clock.now += 20
            with pytest.raises(TargetRateLimitedError, match="spent for 100 s more") as held:
                await other.request("GET", "zones")
            assert held.value.retry_after == 100.0
            assert len(seen) == 1 and clock.waits == []
            clock.now += 100 - MAX_WAIT  # a short hold left: waited out by the request
            await other.request("GET", "zones")
            assert clock.waits == [MAX_WAIT] and len(seen) == 2
            await http.close()
            await other.close()
            return caught.value

    error = run(scenario)
    assert error.retry_after == 120.0 > MAX_WAIT
    assert "come back later" in str(error)


def test_an_exhausted_ratelimit_header_holds_the_next_request() -> None:
    clock = FakeClock(1000.0)

    async def scenario() -> None:
        script: list[Reply] = [
            (200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "3"}, {}),
            (200, {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "9"}, {}),
            # The draft's structured field, in lower case as HTTP/2 peers send names.
            (200, {"ratelimit": '"default";r=0;t=4'}, {}),
            (200, {"ratelimit": '"default";r=3;t=4'}, {}),
            (200, {}, {}),
        ]
        async with server(script) as (url, _):
            http = client(url, clock)
            await http.request("GET", "a")
            assert clock.waits == []
            for path in "bcde":
                await http.request("GET", path)
            await http.close()

    run(scenario)
    assert clock.waits == [3.0, 4.0]  # remaining 5 and r=3 hold nothing


def test_the_shared_budget_spaces_requests_of_every_client_of_an_account() -> None:
    clock = FakeClock(1000.0)
    account = Account(RateBudget(2, 10.0), clock=clock, sleep=clock.sleep)
    assert Account.shared("p", "cred", None) is Account.shared("p", "cred", None)
    assert Account.shared("p", "cred", None) is not Account.shared("p", "other", None)

    async def scenario() -> None:
        async with server([(200, {}, {})]) as (url, _):
            one, two = client(url, clock, account), client(url, clock, account)
            for http in (one, two, one, two):
                await http.request("GET", "x")
            await one.close()
            await two.close()

    run(scenario)
    # A burst of 2, then one request per 5 s.
    assert clock.waits == [5.0, 5.0]


def test_5xx_is_retried_for_idempotent_methods_only() -> None:
    clock = FakeClock(1000.0)

    async def scenario() -> tuple[int, int]:
        script: list[Reply] = [(502, {}, {"error": "bad gateway"})] * 2 + [(200, {}, {})]
        async with server(script) as (url, seen):
            http = client(url, clock)
            await http.request("PUT", "x", json={})
            put = len(seen)
        async with server([(500, {}, {"error": "boom"})]) as (url, seen):
            http2 = client(url, clock)
            with pytest.raises(TargetUnavailableError, match="HTTP 500: boom"):
                await http2.request("POST", "x", json={})
            post = len(seen)
        await http.close()
        await http2.close()
        return put, post

    assert run(scenario) == (3, 1)  # a POST may have been applied: never sent twice
    assert clock.waits == [0.375, 0.75]  # equal jitter: half fixed, half rng (0.5)


def test_errors_carry_the_providers_message_and_never_the_credential(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1000.0)

    def error_text(response: Response) -> str:
        body = response.json()
        return f"{body['errors'][0]['code']}: {body['errors'][0]['message']}"

    async def scenario() -> list[Exception]:
        script: list[Reply] = [
            (403, {}, {"errors": [{"code": 9109, "message": f"bad token {SECRET}"}]}),
            (400, {}, {"errors": [{"code": 1004, "message": "DNS Validation Error"}]}),
        ]
        out: list[Exception] = []
        async with server(script) as (url, _):
            http = client(url, clock, error_text=error_text)
            for _ in range(2):
                try:
                    await http.request("GET", f"zones?token={SECRET}")
                except TargetRejectedError as exc:
                    out.append(exc)
            await http.close()
        return out

    with caplog.at_level(logging.DEBUG, logger="zonefan"):
        denied, invalid = run(scenario)
    assert "9109: bad token ***" in str(denied) and "check the credentials" in str(denied)
    assert "HTTP 400: 1004: DNS Validation Error" in str(invalid)
    assert caplog.records, "nothing logged at debug level"
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert all(SECRET not in str(e) for e in (denied, invalid))


def test_a_listing_that_never_ends_is_an_error() -> None:
    clock = FakeClock(1000.0)

    async def scenario() -> list[Any]:
        async with server([(200, {}, {"items": [1, 2], "next": "again"})]) as (url, seen):
            http = client(url, clock)
            with pytest.raises(TargetUnavailableError, match="did not end after 3 pages"):
                await http.pages(
                    "list",
                    items=lambda r: r.json()["items"],
                    next_params=lambda r, p: {"cursor": r.json()["next"]},
                    limit=3,
                )
            pages = await http.pages(
                "list",
                items=lambda r: r.json()["items"],
                next_params=lambda r, p: None if len(seen) >= 5 else {"page": str(len(seen))},
            )
            await http.close()
            assert seen[-1].query["page"] == "4"
            return pages

    assert run(scenario) == [1, 2] * 2
