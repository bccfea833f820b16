"""A minimal SDK with one choke point, `Client.send(operation, payload, stream=False)` (like ollama's
`_request` or mistral's `do_request`): a `backend(operation, payload)` plays the server."""


class ServerError(Exception):
    def __init__(self, status_code, message="server error"):
        super().__init__(message)
        self.status_code = status_code


class Client:
    def __init__(self, backend):
        self.backend = backend

    def send(self, operation, payload, stream=False):
        if stream:
            return self._stream(operation, payload)
        return self.backend(operation, payload)

    def _stream(self, operation, payload):  # a generator: the request starts on the first iteration
        yield from self.backend(operation, payload)

    def generate(self, model, prompt, stream=False):
        return self.send("generate", {"model": model, "prompt": prompt}, stream=stream)


class AsyncClient(Client):
    async def send(self, operation, payload, stream=False):
        if stream:
            return self._astream(operation, payload)
        return self.backend(operation, payload)

    async def _astream(self, operation, payload):
        for item in self.backend(operation, payload):
            yield item
