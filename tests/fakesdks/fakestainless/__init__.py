"""A minimal SDK in the shape of the Stainless template (openai, anthropic, groq): every endpoint
goes through `SyncAPIClient.request(cast_to, options, *, stream, stream_cls)`."""

from ._base_client import APIStatusError, FinalRequestOptions, Stream, SyncAPIClient


class Client(SyncAPIClient):
    def chat(self, **body):
        return self.request(dict, FinalRequestOptions("post", "/chat", body), stream=bool(body.get("stream")), stream_cls=Stream)

    def files(self):
        return self.request(dict, FinalRequestOptions("get", "/files", None))
