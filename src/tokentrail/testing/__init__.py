"""A fake LLM provider for tests — ours and yours. No network, no keys.

It speaks the OpenAI and Anthropic wire formats (JSON and SSE streams with
usage, tool calls and request ids), so the real SDKs run unchanged against it:

    from tokentrail.testing import FakeProvider

    fake = FakeProvider()
    client = fake.openai_client()                       # a real openai.OpenAI on an in-process transport
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    fake.fail(status=429, retry_after=0)                # the next request gets a 429
    fake.fail(timeout=True)                             # the next request times out
    fake.settings.latency = 0.05                        # seconds before each answer
    fake.settings.frame_delay = 0.01                    # seconds between stream chunks

    with fake.serve() as url:                           # the same, over real HTTP on 127.0.0.1
        openai.OpenAI(base_url=f"{url}/v1", api_key="test")

Or from a shell: `python -m tokentrail.testing serve --port 8900`. Over HTTP a
request can ask for an error with the header `x-fake-error: 429` (any status).

The SDKs' HTTP library: openai 3 and anthropic 2 are built on `httpx2`, older
releases on `httpx`; the transport matches whichever the SDK imports.

The pytest plugin (`pytest --tokentrail`, the `tokentrail` fixture and
`@pytest.mark.tokentrail(max_usd=...)`) is `tokentrail.testing.pytest_plugin`,
installed as a pytest11 entry point (not imported from here: no pytest import).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from typing import Any, Iterator

from ._wire import Failure, Reply, Settings, respond

__all__ = ["FakeProvider", "Failure", "Settings", "http_module"]


def http_module(sdk: str) -> Any:
    """The HTTP library to build a transport with: `httpx` / `httpx2` by name, or for a
    Stainless SDK (openai, anthropic, groq) whichever its base client imports."""
    if sdk in ("httpx", "httpx2"):
        return importlib.import_module(sdk)
    base = importlib.import_module(f"{sdk}._base_client")
    return getattr(base, "httpx2", None) or importlib.import_module("httpx")


class FakeProvider:
    def __init__(self, **settings: Any) -> None:
        self.settings = Settings(**settings)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served

    # -- behaviour ---------------------------------------------------------------------------------

    def fail(self, status: int = 500, *, message: str | None = None, retry_after: float | None = None,
             timeout: bool = False, times: int = 1, path: str | None = None) -> None:
        """Make the next `times` requests (to paths containing `path`, if given) fail."""
        self.settings.failures.append(Failure(status, message or f"fake {status}", retry_after, timeout, times, path))

    def reply(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        self.requests.append((method, path))
        return respond(method, path, {k.lower(): v for k, v in headers.items()}, body, self.settings)

    # -- in-process transports -----------------------------------------------------------------

    def transport(self, sdk: str = "openai") -> Any:
        """A `MockTransport` for synchronous clients of `sdk`."""
        httpx = http_module(sdk)

        def handler(request: Any) -> Any:
            reply = self.reply(request.method, request.url.raw_path.decode(), dict(request.headers), request.read())
            if reply.timeout:
                raise httpx.ReadTimeout("fake provider: no answer", request=request)
            time.sleep(reply.latency)
            if reply.frames is None:
                return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

            def frames() -> Iterator[bytes]:
                for i, frame in enumerate(reply.frames):
                    if i and reply.frame_delay:
                        time.sleep(reply.frame_delay)
                    yield frame

            return httpx.Response(reply.status, headers=reply.headers, content=frames())

        return httpx.MockTransport(handler)

    def async_transport(self, sdk: str = "openai") -> Any:
        """A `MockTransport` for asynchronous clients of `sdk`."""
        httpx = http_module(sdk)

        async def handler(request: Any) -> Any:
            body = await request.aread()
            reply = self.reply(request.method, request.url.raw_path.decode(), dict(request.headers), body)
            if reply.timeout:
                raise httpx.ReadTimeout("fake provider: no answer", request=request)
            await asyncio.sleep(reply.latency)
            if reply.frames is None:
                return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

            async def frames() -> Any:
                for i, frame in enumerate(reply.frames):
                    if i and reply.frame_delay:
                        await asyncio.sleep(reply.frame_delay)
                    yield frame

            return httpx.Response(reply.status, headers=reply.headers, content=frames())

        return httpx.MockTransport(handler)

    # -- real SDK clients on the transport -----------------------------------------------------

    def _client(self, sdk: str, cls: str, asynchronous: bool, kwargs: dict[str, Any]) -> Any:
        module = importlib.import_module(sdk)
        http = http_module(sdk)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("api_key", "sk-fake" if sdk == "openai" else "sk-ant-fake")
        kwargs.setdefault("base_url", "https://api.openai.com/v1" if sdk == "openai" else "https://api.anthropic.com")
        if asynchronous:
            client = http.AsyncClient(transport=self.async_transport(sdk))
        else:
            client = http.Client(transport=self.transport(sdk))
        return getattr(module, cls)(http_client=client, **kwargs)

    def openai_client(self, **kwargs: Any) -> Any:
        """A real `openai.OpenAI` on this fake (extra arguments go to the client)."""
        return self._client("openai", "OpenAI", False, kwargs)

    def async_openai_client(self, **kwargs: Any) -> Any:
        return self._client("openai", "AsyncOpenAI", True, kwargs)

    def anthropic_client(self, **kwargs: Any) -> Any:
        """A real `anthropic.Anthropic` on this fake."""
        return self._client("anthropic", "Anthropic", False, kwargs)

    def async_anthropic_client(self, **kwargs: Any) -> Any:
        return self._client("anthropic", "AsyncAnthropic", True, kwargs)

    def client(self, provider: str, asynchronous: bool = False, **kwargs: Any) -> Any:
        """A real client of another provider's SDK on this fake: `fake.client("groq")`,
        `fake.client("mistral", asynchronous=True)`. Each provider's wire format and client
        builder live in `tokentrail/testing/providers/<provider>.py`."""
        module = importlib.import_module(f"{__name__}.providers.{provider}")
        return module.client(self, asynchronous, **kwargs)

    # -- real HTTP -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve this fake over HTTP in a background thread; yields the base URL. Every provider's
        routes are served (OpenAI, Anthropic, and those in `providers/`)."""
        from . import providers  # noqa: F401 - importing them adds their routes
        from .server import start

        server, thread = start(self, host, port)
        try:
            yield f"http://{host}:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
