"""The base client: a `handler(path, body) -> (status, bytes or list of SSE data strings)` plays the server."""

import json


class APIStatusError(Exception):
    def __init__(self, status_code):
        super().__init__(f"status {status_code}")
        self.status_code = status_code


class FinalRequestOptions:
    def __init__(self, method, url, json_data):
        self.method, self.url, self.json_data = method, url, json_data


class _Request:
    def __init__(self, content):
        self.content = content


class Response:
    def __init__(self, request_body, content=b"", lines=()):
        self.request = _Request(request_body)
        self.content, self.lines, self.extensions = content, list(lines), {}


class ServerSentEvent:
    def __init__(self, data):
        self.data = data


class Stream:
    def __init__(self, *, response):
        self.response = response
        self._iterator = self.__stream__()

    def _iter_events(self):
        for line in self.response.lines:
            yield ServerSentEvent(line)

    def __stream__(self):
        for sse in self._iter_events():
            yield json.loads(sse.data)

    def __iter__(self):
        yield from self._iterator

    def close(self):
        self.response.lines = []


class SyncAPIClient:
    def __init__(self, handler):
        self.handler = handler

    def request(self, cast_to, options, *, stream=False, stream_cls=None):
        status, payload = self.handler(options.url, options.json_data)
        if status >= 400:
            raise APIStatusError(status)
        body = json.dumps(options.json_data).encode()
        response = Response(body, lines=payload) if stream else Response(body, content=payload)
        return self._process_response(cast_to=cast_to, options=options, response=response, stream=stream, stream_cls=stream_cls)

    def _process_response(self, *, cast_to, options, response, stream, stream_cls):
        return stream_cls(response=response) if stream else json.loads(response.content)

    def _sleep_for_retry(self, *args, **kwargs):
        return None


class AsyncAPIClient(SyncAPIClient):
    async def request(self, cast_to, options, *, stream=False, stream_cls=None):
        return SyncAPIClient.request(self, cast_to, options, stream=stream, stream_cls=stream_cls)

    async def _process_response(self, *, cast_to, options, response, stream, stream_cls):
        return SyncAPIClient._process_response(self, cast_to=cast_to, options=options, response=response, stream=stream, stream_cls=stream_cls)

    async def _sleep_for_retry(self, *args, **kwargs):
        return None
