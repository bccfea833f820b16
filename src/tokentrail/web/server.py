"""The dashboard's server: a starlette app whose JSON API renders what `tokentrail.report` returns.

Every number comes from `report.py` (the queries the CLI uses); this module
parses query parameters, calls it, and turns the answer into JSON.

Decisions a user can see:

- **Binding.** `127.0.0.1:8437` by default. Binding any address that is not
  loopback requires a token (`--token`, or one is generated and printed with
  the URL that carries it); with a token every request must carry it — as
  `?token=…` (the page then keeps it in a same-site, HTTP-only cookie), an
  `Authorization: Bearer …` header, or the cookie — or gets 401. On loopback
  the `Host` header must name a loopback host (a page on another site cannot
  reach the dashboard through DNS rebinding).
- **API.** `GET /api/summary`, `/api/timeseries`, `/api/breakdown?by=` (the
  costliest `top` groups, 100 unless said, and the `rest` summed),
  `/api/calls`, `/api/calls/{id}`, `/api/errors`, `/api/outcomes`,
  `/api/trace/{ref}`, `/api/values?field=`, `/api/cursor`, and the answers
  no other tracker gives: `/api/reprice?to=MODEL&by=` (what if the calls had
  gone to another model) and `/api/cache?by=` (what prompt caching saved). All take
  `since`/`until` (`24h`, `7d`, ISO dates) and the filters `model`,
  `provider`, `user`, `customer`, `feature`, `workflow`, `operation`,
  `error_category` (`a,b` for either) and `status` (`ok`/`error`). A
  malformed parameter answers 400 with `{"error": "..."}`; an unknown call
  404.
- **Live refresh.** The page asks `/api/cursor` (the store's last insert
  position, one indexed lookup) every few seconds and reloads its data only
  when it moved.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import secrets
from pathlib import Path
from typing import Any, AsyncIterator, Callable
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import report
from ..errors import ConfigError, StoreError

__all__ = ["create_app", "serve", "is_loopback", "DEFAULT_HOST", "DEFAULT_PORT", "FILTERS", "STATIC"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8437
STATIC = Path(__file__).parent / "static"
# Query parameters that filter calls -> the store's field names.
FILTERS = {"model": "model", "provider": "provider", "user": "user", "customer": "customer", "feature": "feature",
           "workflow": "workflow", "operation": "operation", "error_category": "error_category", "session": "session"}
COOKIE = "tokentrail_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the dashboard on this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class BadRequest(ValueError):
    pass


BREAKDOWN_TOP = 100  # groups a breakdown lists; the others are summed in its `rest`


def _int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {value!r}") from None


def _range(request: Request) -> tuple[Any, Any]:
    since = request.query_params.get("since") or None
    until = request.query_params.get("until") or None
    return report.time_range(since, until)


def _where(request: Request) -> dict[str, Any]:
    where: dict[str, Any] = {}
    for name, field in FILTERS.items():
        value = request.query_params.get(name)
        if value:
            where[field] = value.split(",") if "," in value else value
    status = request.query_params.get("status")
    if status == "error":
        where.update(report.failed_filter())
    elif status == "ok":
        where["error_category"] = None
    elif status not in (None, "", "all"):
        raise BadRequest(f"status must be ok, error or all, not {status!r}")
    return where


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _endpoint(func: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """A sync API endpoint (starlette runs it in its thread pool): bad input -> 400, unknown -> 404."""

    def run(request: Request) -> Response:
        try:
            return _json(func(request))
        except (ValueError, ConfigError) as exc:
            return _json({"error": str(exc).removeprefix("tokentrail: ")}, 400)
        except StoreError as exc:
            message = str(exc).removeprefix("tokentrail: ")
            return _json({"error": message}, 404 if message.startswith("no ") else 500)

    return run


class TokenGate:
    """ASGI middleware: every HTTP request carries the token (query, bearer header or cookie), else 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        from_query = request.query_params.get("token")
        bearer = request.headers.get("authorization", "")
        bearer = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if not (self._ok(from_query) or self._ok(bearer) or self._ok(request.cookies.get(COOKIE))):
            await JSONResponse({"error": "this dashboard needs its token: open the URL `tokentrail ui` printed "
                                         "(…?token=…) or send Authorization: Bearer <token>"}, 401)(scope, receive, send)
            return
        if not self._ok(from_query):
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", f"{COOKIE}={quote(self.token.decode())}; Path=/; HttpOnly; SameSite=Strict".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class LoopbackHosts:
    """ASGI middleware for loopback binds: refuse a `Host` that is not this machine (DNS rebinding)."""

    def __init__(self, app: Any, extra: tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = LOOPBACK_NAMES | set(extra)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = Request(scope).headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in self.allowed:
                await JSONResponse({"error": f"host {host!r} is not this machine"}, 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(store: Any = None, *, token: str | None = None, allowed_hosts: tuple[str, ...] | None = None) -> Starlette:
    """The dashboard over the store at `store` (a URL or path; None: the configured store), opened once for
    reading. `token`: require it on every request. `allowed_hosts`: refuse other `Host` headers (loopback binds)."""
    url = report.store_url(store)
    opened = report.open_existing(url)
    report.check_schema(opened)

    def summary(request: Request) -> Any:
        since, until = _range(request)
        where = _where(request)
        totals = report.totals(opened, since, until, where)
        return {"store": url, "totals": totals, "empty": not totals and not report.has_calls(opened),
                "range": {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None}}

    def timeseries(request: Request) -> Any:
        since, until = _range(request)
        stack = request.query_params.get("stack", "model")
        return report.timeseries(opened, request.query_params.get("bucket", "auto"), None if stack == "none" else stack,
                                 since, until, _where(request), top=_int(request, "top", 8))

    def breakdown(request: Request) -> Any:
        since, until = _range(request)
        by = [b for b in request.query_params.get("by", "model").split(",") if b]
        top = _int(request, "top", BREAKDOWN_TOP)
        if top < 1:
            raise BadRequest(f"top must be at least 1, not {top}")
        rows = report.breakdown(opened, by, since, until, _where(request))
        # The costliest `top` groups, and the rest summed in one line: 20,000 users are no table to read
        # (nor 6.7 MB of JSON to send and a page to lay out).
        rest = rows[top:]
        return {"by": by, "rows": rows[:top], "rest": {
            "groups": len(rest), "calls": sum(r["calls"] for r in rest),
            "total_tokens": sum(r["total_tokens"] or 0 for r in rest),
            "cost_usd": sum(r["cost_usd"] or 0.0 for r in rest)} if rest else None}

    def calls(request: Request) -> Any:
        since, until = _range(request)
        return report.calls_page(opened, since, until, _where(request), sort=request.query_params.get("sort", "newest"),
                                 offset=_int(request, "offset", 0), limit=_int(request, "limit", 50))

    def call(request: Request) -> Any:
        return {"call": report.find_call(opened, request.path_params["call_id"])}

    def errors(request: Request) -> Any:
        since, until = _range(request)
        return {"rows": report.errors_report(opened, since, until, _where(request))}

    def outcomes(request: Request) -> Any:
        since, until = _range(request)
        return {"rows": report.outcomes_report(opened, since, until, _where(request))}

    def reprice(request: Request) -> Any:
        since, until = _range(request)
        by = [b for b in request.query_params.get("by", "feature").split(",") if b]
        # `to`, not `model`: `model` filters the calls (what if gpt-4o's calls had gone to gpt-4o-mini?)
        return report.reprice(opened, request.query_params.get("to", ""), by, since, until, _where(request))

    def cache(request: Request) -> Any:
        since, until = _range(request)
        by = [b for b in request.query_params.get("by", "model").split(",") if b]
        return {"by": by, "rows": report.cache_savings(opened, by, since, until, _where(request))}

    def trace(request: Request) -> Any:
        return report.trace(opened, request.path_params["ref"])

    def values(request: Request) -> Any:
        field = request.query_params.get("field", "")
        if field not in FILTERS:
            raise BadRequest(f"field must be one of {', '.join(FILTERS)}, not {field!r}")
        since, until = _range(request)
        rows = report.summary(opened, (report.BREAKDOWNS.get(field, field),), since, until, None, percentiles=False)
        rows.sort(key=lambda r: -r["calls"])
        return {"field": field, "values": [r[field] for r in rows[:200] if r[field] is not None]}

    def cursor(request: Request) -> Any:
        return {"cursor": report.start_cursor(opened)}

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/api/summary", _endpoint(summary)),
        Route("/api/timeseries", _endpoint(timeseries)),
        Route("/api/breakdown", _endpoint(breakdown)),
        Route("/api/calls", _endpoint(calls)),
        Route("/api/calls/{call_id:path}", _endpoint(call)),
        Route("/api/errors", _endpoint(errors)),
        Route("/api/outcomes", _endpoint(outcomes)),
        Route("/api/trace/{ref:path}", _endpoint(trace)),
        Route("/api/reprice", _endpoint(reprice)),
        Route("/api/cache", _endpoint(cache)),
        Route("/api/values", _endpoint(values)),
        Route("/api/cursor", _endpoint(cursor)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        opened.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = opened
    app.state.url = url
    if token:
        app.add_middleware(TokenGate, token=token)
    if allowed_hosts is not None:
        app.add_middleware(LoopbackHosts, extra=tuple(allowed_hosts))
    return app


def serve(store: Any = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
          open_browser: bool = True, echo: Callable[[str], None] = print) -> None:
    """Run the dashboard until interrupted. A non-loopback `host` without `token` gets a generated one."""
    import uvicorn

    loopback = is_loopback(host)
    if not loopback and not token:
        token = secrets.token_urlsafe(24)
    app = create_app(store, token=token, allowed_hosts=(host,) if loopback else None)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    link = f"http://{shown}:{port}/" + (f"?token={quote(token)}" if token else "")
    echo(f"tokentrail dashboard on {app.state.url}: {link}")
    if not loopback:
        echo(f"listening on {host}, reachable from other machines: every request needs the token ({token})")
    echo("press Ctrl+C to stop")
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(0.8, lambda: webbrowser.open(link)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
