"""The one HTTP client every provider API goes through.

It owns what every provider needs and none should write again: one aiohttp session, auth
headers (or a request signer, for SigV4), the provider's rate budget shared by every zone
of one account, waiting out HTTP 429 with ``Retry-After`` and the ``RateLimit-*`` /
``X-RateLimit-*`` headers, retries of idempotent requests with jitter, provider error
bodies turned into typed errors carrying the provider's own message, pagination, and a
debug log of every request with the credentials redacted.

What is retried here and what is left to the engine: a 429 was not processed, so any method
is sent again after the wait. A 5xx or a lost connection may have been processed, so only
GET, PUT, DELETE and HEAD (idempotent, RFC 9110 §9.2.2) are sent again; a POST or PATCH
raises at once and the engine reads the target again and plans from what it holds: nothing
is applied twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json as jsonlib
import logging
import math
import random
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar

from multidict import CIMultiDict

from sync.errors import (
    TargetError,
    TargetRateLimitedError,
    TargetRejectedError,
    TargetUnavailableError,
)
from sync.providers.capabilities import RateBudget
from sync.ratelimit import RateLimiter

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("zonefan.sync.http")

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Query parameters whose values are credentials somewhere (redacted from logs).
_SECRET_PARAM = re.compile(r"(?i)(key|token|secret|password|signature|credential)")
# The longest wait a request sits out itself; a longer one goes to the engine at once (as
# TargetRateLimitedError with the wait), which holds the target and works on other targets.
MAX_WAIT = 5.0
_STRUCTURED_R = re.compile(r";\s*r=(\d+)")
_STRUCTURED_T = re.compile(r";\s*t=(\d+)")
BACKOFF_BASE = 0.5
REDACTED = "***"
MIN_SECRET = 4

Signer = Callable[[str, str, dict[str, str], bytes], dict[str, str]]
Sleep = Callable[[float], Awaitable[None]]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header: delta-seconds or an HTTP date
    (RFC 9110 §10.2.3); None when absent or unparseable, never negative."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)


def _reset_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a rate-limit header set asks for: ``Retry-After``, else the reset of an
    exhausted ``RateLimit`` (IETF draft: seconds) or ``X-RateLimit`` (seconds, or a Unix
    time when it is larger than a day)."""
    retry = parse_retry_after(headers.get("Retry-After"), now)
    if retry is not None:
        return retry
    # The IETF draft's structured field, as Cloudflare sends it: `"default";r=0;t=30`.
    structured = headers.get("RateLimit")
    if structured is not None:
        r = _STRUCTURED_R.search(structured)
        t = _STRUCTURED_T.search(structured)
        if r is not None and t is not None and int(r.group(1)) == 0:
            return float(t.group(1))
    for prefix in ("RateLimit", "X-RateLimit"):
        remaining = headers.get(f"{prefix}-Remaining")
        reset = headers.get(f"{prefix}-Reset")
        if remaining is None or reset is None:
            continue
        try:
            left, seconds = int(remaining.strip()), float(reset.strip())
        except ValueError:
            continue
        if left > 0 or not math.isfinite(seconds):
            continue
        if seconds > 86400:  # a Unix time
            seconds -= time.time() if now is None else now
        return max(seconds, 0.0)
    return None


class Account:
    """What every target using one provider account shares: the provider's documented rate
    budget (a token bucket) and a hold after a 429 or an exhausted ``RateLimit`` header, so
    one zone's push slows every zone of that account, not only itself."""

    _shared: ClassVar[dict[tuple[str, str], Account]] = {}

    def __init__(
        self,
        budget: RateBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.budget = budget
        self.clock = clock
        self.sleep = sleep
        rate = budget.rate if budget is not None else 0.0
        burst = float(budget.requests) if budget is not None else 1.0
        self._bucket = RateLimiter(rate, burst=burst, clock=clock, sleep=sleep)
        self.hold_until = 0.0

    @classmethod
    def shared(cls, provider: str, credential: str, budget: RateBudget | None = None) -> Account:
        """The account of ``credential`` at ``provider`` (the credential itself is kept
        only as a digest)."""
        digest = hashlib.sha256(credential.encode()).hexdigest()
        key = (provider, digest)
        account = cls._shared.get(key)
        if account is None:
            account = cls._shared[key] = cls(budget)
        return account

    def hold(self, seconds: float) -> None:
        """No request of this account before ``seconds`` from now."""
        self.hold_until = max(self.hold_until, self.clock() + seconds)

    async def ready(self) -> None:
        """Wait out a hold, then take a token from the budget."""
        wait = self.hold_until - self.clock()
        if wait > 0:
            await self.sleep(wait)
        if self.budget is not None:
            await self._bucket.acquire()


@dataclass(frozen=True)
class Response:
    """A provider's answer: status, headers and the body as received."""

    status: int
    headers: Mapping[str, str]
    raw: bytes
    method: str = ""
    path: str = ""
    target: str = ""

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        if not self.raw:
            return None
        try:
            return jsonlib.loads(self.raw)
        except ValueError:
            raise TargetRejectedError(
                self.target,
                f"{self.method} {self.path}: HTTP {self.status} with a body that is not "
                f"JSON: {self.text[:200]!r}",
            ) from None


def json_error_text(response: Response) -> str:
    """The message of a JSON error body in the common shapes (``{"error": ...}``,
    ``{"message": ...}``, ``{"detail": ...}``, ``{"errors": [{"message": ...}]}``), else
    the start of the body."""
    try:
        body = jsonlib.loads(response.raw) if response.raw else None
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, Mapping) and isinstance(value.get("message"), str):
                return str(value["message"])
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts = [str(e.get("message", e)) if isinstance(e, Mapping) else str(e) for e in errors]
            return "; ".join(parts)
    text = response.text.strip()
    return text[:300] if text else "no error text"


class HttpClient:
    """One provider API: ``base_url`` plus paths. Every request goes through
    :meth:`request`; see the module docstring for what it retries."""

    def __init__(
        self,
        target: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        account: Account | None = None,
        secrets: Sequence[str] = (),
        retries: int = 4,
        error_text: Callable[[Response], str] = json_error_text,
        sign: Signer | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.account = account if account is not None else Account(sleep=sleep)
        # A secret of a few characters would garble every message it was masked in (and
        # guards nothing): only real credentials are masked.
        self.secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET)
        self.retries = retries
        self.error_text = error_text
        self.sign = sign
        self.sleep = sleep
        self.rng = rng
        self.wall = wall  # the clock HTTP dates and Unix-time resets are read against
        self.requests = 0  # sent, retries included (the benchmarks count them)
        self._session: aiohttp.ClientSession | None = None

    # -- redaction ---------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with every credential replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _loggable(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        if parts.query:
            query = [
                (k, REDACTED if _SECRET_PARAM.search(k) else v)
                for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            ]
            url = parts._replace(query=urllib.parse.urlencode(query, safe="*")).geturl()
        return self.redact(url)

    # -- requests ----------------------------------------------------------------------------

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        if "://" in path:
            url = path
        else:
            url = f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        return url

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Sequence[int] = (),
    ) -> Response:
        """Send one request (again, per the module docstring); a 2xx or a status in ``ok``
        is returned, anything else raised as the matching :class:`TargetError`."""
        body = data if json is None else jsonlib.dumps(json, separators=(",", ":")).encode()
        url = self.url(path, params)
        send_headers = dict(headers or {})
        if json is not None:
            send_headers.setdefault("Content-Type", "application/json")
        attempt = 0
        while True:
            attempt += 1
            held = self.account.hold_until - self.account.clock()
            if held > MAX_WAIT:  # a long hold is the engine's to wait, not a request's
                raise TargetRateLimitedError(
                    self.target,
                    f"{method} {path or '/'}: the account's request budget is spent for "
                    f"{held:.0f} s more",
                    retry_after=held,
                )
            try:
                response = await self._send(method, url, path, body, send_headers)
            except TargetUnavailableError:
                if method.upper() not in IDEMPOTENT or attempt > self.retries:
                    raise
                await self.sleep(self._backoff(attempt))
                continue
            wait = _reset_seconds(response.headers, self.wall())
            if response.status == 429 or (response.status == 503 and wait is not None):
                wait = wait if wait is not None else self._backoff(attempt)
                self.account.hold(wait)
                if attempt > self.retries or wait > MAX_WAIT:
                    raise self._error(response, retry_after=wait)
                continue  # the account's hold is waited out before the next send
            if wait is not None:  # an exhausted budget announced on a successful answer
                self.account.hold(wait)
            if 200 <= response.status < 300 or response.status in ok:
                return response
            if response.status >= 500 and method.upper() in IDEMPOTENT and attempt <= self.retries:
                await self.sleep(self._backoff(attempt))
                continue
            raise self._error(response)

    def _backoff(self, attempt: int) -> float:
        """Equal jitter: half the exponential step fixed, half random."""
        step = BACKOFF_BASE * 2.0 ** min(attempt - 1, 8)
        return float(step / 2 + self.rng() * step / 2)

    async def _send(
        self, method: str, url: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        # Imported with the first request: commands that only read the config never pay
        # for loading aiohttp.
        import aiohttp

        session = self._open_session()
        await self.account.ready()
        headers = {**self.headers, **headers}
        if self.sign is not None:
            headers = self.sign(method, url, headers, body or b"")
        started = time.monotonic()
        self.requests += 1
        try:
            async with session.request(method, url, data=body, headers=headers) as resp:
                raw = await resp.read()
                # Header names are case-insensitive (RFC 9110 §5.1): kept so.
                received = CIMultiDict(resp.headers)
                response = Response(resp.status, received, raw, method, path, self.target)
        except TimeoutError:
            raise TargetUnavailableError(
                self.target,
                f"{method} {self._loggable(url)}: no answer within {self.timeout:g} s",
            ) from None
        except aiohttp.ClientError as exc:
            raise TargetUnavailableError(
                self.target,
                f"{method} {self._loggable(url)}: {self.redact(str(exc) or type(exc).__name__)}",
            ) from None
        log.debug(
            "target %s: %s %s -> %d in %.0f ms",
            self.target,
            method,
            self._loggable(url),
            response.status,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            # Plain http needs no TLS context (building the default one costs ~50 ms).
            plain = self.base_url.startswith("http://")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False) if plain else None,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    def _error(self, response: Response, retry_after: float | None = None) -> TargetError:
        what = self.redact(
            f"{response.method} {response.path or '/'} answered HTTP {response.status}: "
            f"{self.error_text(response)}"
        )
        if response.status == 429 or retry_after is not None:
            return TargetRateLimitedError(self.target, what, retry_after=retry_after)
        if response.status >= 500:
            return TargetUnavailableError(self.target, what)
        if response.status in (401, 403):
            return TargetRejectedError(self.target, what + " (check the credentials)")
        return TargetRejectedError(self.target, what)

    async def pages(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        items: Callable[[Response], Sequence[Any]],
        next_params: Callable[[Response, dict[str, str]], dict[str, str] | None],
        limit: int = 100_000,
    ) -> list[Any]:
        """Every item of a paginated listing: ``items`` takes them from one page,
        ``next_params`` gives the parameters of the next page (None: the last). At most
        ``limit`` pages: a provider that never ends a listing is an error, not a hang."""
        out: list[Any] = []
        current = dict(params or {})
        for _ in range(limit):
            response = await self.request("GET", path, params=current)
            out.extend(items(response))
            following = next_params(response, current)
            if following is None:
                return out
            current = following
        raise TargetUnavailableError(
            self.target, f"GET {path}: the listing did not end after {limit} pages"
        )

    async def close(self) -> None:
        """Close the session; a later request opens a new one."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
