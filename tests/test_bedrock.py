"""Amazon Bedrock through the real boto3 / botocore, answered by tokentrail.testing's fake from botocore's
`before-send` event (no connection is ever opened: a socket connect fails every test here)."""

import gc
import json
import socket

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.eventstream import EventStream
from botocore.exceptions import ClientError, EventStreamError, IncompleteReadError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings, strategies as st

import tokentrail
from conftest import only
from tokentrail.testing.providers.bedrock import aws_response, chunk_events, event_stream_frames, stub

MODEL = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
MESSAGES = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]
TOOLS = {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a Bedrock test opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def new_client(**kwargs):
    kwargs.setdefault("config", Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                        aws_secret_access_key="fake-secret", **kwargs)


def priced(call, model=None):
    return tokentrail.cost("aws.bedrock", model or call.request_model, input_tokens=call.input_tokens, output_tokens=call.output_tokens,
                           cache_read_tokens=call.cache_read_tokens or 0, cache_write_tokens=call.cache_write_tokens or 0).total_usd


def test_converse_records_everything_with_cache_counted_as_input(fake, log):
    fake.settings.cache_read_tokens, fake.settings.cache_write_tokens = 2000, 300
    client = fake.client("bedrock")
    reply = client.converse(modelId=MODEL, messages=MESSAGES, system=[{"text": "be brief"}],
                            inferenceConfig={"maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"]},
                            additionalModelRequestFields={"top_k": 5})
    usage = reply["usage"]
    call = only(log)
    assert (call.provider, call.operation, call.source) == ("aws.bedrock", "chat", "bedrock")
    assert (call.request_model, call.response_id) == (MODEL, reply["ResponseMetadata"]["RequestId"])
    # Bedrock reports cache reads and writes apart from inputTokens; the record counts all input.
    assert call.input_tokens == usage["inputTokens"] + 2000 + 300 and call.total_tokens == usage["totalTokens"]
    assert (call.cache_read_tokens, call.cache_write_tokens, call.output_tokens) == (2000, 300, usage["outputTokens"])
    assert call.request_params == {"maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"], "top_k": 5}
    assert call.message_count == 2 and call.finish_reasons == ["end_turn"] and call.tool_call_count == 0
    assert call.metadata == {"provider_latency_ms": reply["metrics"]["latencyMs"],
                             "server_address": "bedrock-runtime.us-east-1.amazonaws.com", "server_port": 443}
    assert call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0
    assert call.sdk_version == botocore.__version__ and call.attempt == 1 and not call.stream and call.error_type is None


def test_an_input_that_already_counts_the_cache_is_not_counted_twice(log):
    client = new_client()
    body = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 1100, "outputTokens": 5, "totalTokens": 1105, "cacheReadInputTokens": 1000}, "metrics": {"latencyMs": 3}}
    answer(client, 200, json.dumps(body).encode())
    client.converse(modelId=MODEL, messages=MESSAGES)
    call = only(log)
    assert (call.input_tokens, call.cache_read_tokens) == (1100, 1000)


@pytest.mark.parametrize("model_id", [
    "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20241022-v2:0",
])
def test_inference_profiles_and_arns_price_as_the_model_they_name(fake, log, model_id):
    fake.client("bedrock").converse(modelId=model_id, messages=MESSAGES)
    call = only(log)
    assert call.request_model == model_id and call.cost_usd > 0
    assert call.cost_usd == pytest.approx(priced(call, "anthropic.claude-3-5-sonnet-20241022-v2:0"))


def test_tool_use_plain_and_streamed(fake, log):
    client = fake.client("bedrock")
    client.converse(modelId=MODEL, messages=MESSAGES, toolConfig={**TOOLS, "toolChoice": {"any": {}}})
    events = list(client.converse_stream(modelId=MODEL, messages=MESSAGES, toolConfig=TOOLS)["stream"])
    assert any("toolUse" in e.get("contentBlockStart", {}).get("start", {}) for e in events)
    plain, streamed = sorted(log.calls, key=lambda c: c.started_at)
    assert plain.tool_call_count == streamed.tool_call_count == 1
    assert plain.finish_reasons == streamed.finish_reasons == ["tool_use"] and plain.request_params == {"toolChoice": "any"}


def test_converse_stream_stays_an_event_stream_and_records_the_metadata_event(fake, log):
    fake.settings.cache_read_tokens = 500
    response = fake.client("bedrock").converse_stream(modelId=MODEL, messages=MESSAGES, inferenceConfig={"maxTokens": 20})
    assert isinstance(response["stream"], EventStream)
    events = list(response["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    usage = events[-1]["metadata"]["usage"]
    call = only(log)
    assert text == fake.settings.reply and call.stream and call.chunk_count == len(events) == 9 and call.ttft_ms > 0
    assert (call.input_tokens, call.output_tokens, call.cache_read_tokens) == (usage["inputTokens"] + 500, usage["outputTokens"], 500)
    assert call.finish_reasons == ["end_turn"] and call.response_id == response["ResponseMetadata"]["RequestId"]
    assert call.request_params == {"maxTokens": 20} and call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0
    assert "stream_incomplete" not in call.metadata


def test_converse_stream_keeps_the_providers_latency(fake, log):
    list(fake.client("bedrock").converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    assert only(log).metadata["provider_latency_ms"] == 42


def test_streams_closed_early_or_dropped_are_incomplete(fake, log):
    client = fake.client("bedrock")
    stream = client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]
    next(iter(stream))
    stream.close()
    client.invoke_model_with_response_stream(modelId="meta.llama3-8b-instruct-v1:0", body=json.dumps({"prompt": "hi"}))  # never read
    gc.collect()
    closed, dropped = sorted(log.calls, key=lambda c: c.started_at)
    assert closed.metadata["stream_incomplete"] is True and closed.chunk_count == 1 and closed.input_tokens is None
    assert dropped.metadata["stream_incomplete"] is True and dropped.chunk_count == 0


FAMILIES = [
    # model, request body, whether the body reports usage itself (else the headers do)
    ("anthropic.claude-3-haiku-20240307-v1:0", {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "system": "be brief",
                                                "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
    ("meta.llama3-8b-instruct-v1:0", {"prompt": "What is the capital of France?", "max_gen_len": 64, "temperature": 0.5}),
    ("amazon.titan-text-lite-v1", {"inputText": "What is the capital of France?", "textGenerationConfig": {"maxTokenCount": 64, "topP": 0.9}}),
    ("us.amazon.nova-lite-v1:0", {"messages": [{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
                                  "inferenceConfig": {"maxTokens": 64}}),
    ("mistral.mistral-large-2402-v1:0", {"prompt": "<s>[INST] What is the capital of France? [/INST]", "max_tokens": 64}),
    ("cohere.command-r-v1:0", {"message": "What is the capital of France?", "max_tokens": 64}),
]


@pytest.mark.parametrize("model, body", FAMILIES, ids=[m.split(".")[-2] if m.count(".") > 1 else m.split(".")[0] for m, _ in FAMILIES])
def test_invoke_model_each_family(fake, log, model, body):
    fake.settings.cache_read_tokens = 50
    client = fake.client("bedrock")
    response = client.invoke_model(modelId=model, body=json.dumps(body))
    assert isinstance(response["body"], StreamingBody)
    data = json.loads(response["body"].read())  # the application still reads the whole body
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    call = only(log)
    cache = 50 if ("anthropic" in model or "nova" in model) else 0
    assert call.input_tokens == int(headers["x-amzn-bedrock-input-token-count"]) + cache
    assert call.output_tokens == int(headers["x-amzn-bedrock-output-token-count"]) == 5
    assert call.cache_read_tokens == (cache or None)
    del headers["x-amzn-bedrock-output-token-count"]  # where the family's body has the counts, they are read from it
    if any(family in model for family in ("anthropic", "meta", "titan", "nova")):
        assert tokentrail.instrument.bedrock.invoke_response({"body": json.dumps(data), "headers": headers})[0]["output_tokens"] == 5
    assert (call.operation, call.finish_reasons) == ("chat", [fake_finish(data)]) and call.response_id == response["ResponseMetadata"]["RequestId"]
    assert call.request_params and call.message_count in (None, 1, 2)
    if "cohere.command" not in model:  # Cohere Command R has no Bedrock price in the price table
        assert call.cost_usd == pytest.approx(priced(call)) and call.cost_usd > 0


def fake_finish(data):
    return (data.get("stop_reason") or data.get("stopReason") or data.get("finish_reason")
            or (data.get("results") or data.get("outputs") or [{}])[0].get("completionReason")
            or (data.get("outputs") or [{}])[0].get("stop_reason"))


@pytest.mark.parametrize("model, body", FAMILIES, ids=[m.split(".")[1].split("-")[0] for m, _ in FAMILIES])
def test_invoke_model_with_response_stream_each_family(fake, log, model, body):
    response = fake.client("bedrock").invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
    assert isinstance(response["body"], EventStream)
    chunks = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    call = only(log)
    assert call.stream and call.chunk_count == len(chunks) and call.ttft_ms > 0
    assert (call.input_tokens, call.output_tokens) == (metrics["inputTokenCount"], metrics["outputTokenCount"])
    assert call.finish_reasons and call.response_id == response["ResponseMetadata"]["RequestId"]


def test_embeddings_and_count_tokens(fake, log):
    client = fake.client("bedrock")
    titan = json.loads(client.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "hello world"}))["body"].read())
    client.invoke_model(modelId="cohere.embed-english-v3", body=json.dumps({"texts": ["a", "b"], "input_type": "search_document"}))
    counted = client.count_tokens(modelId=MODEL, input={"converse": {"messages": MESSAGES}})
    calls = {c.request_model: c for c in log.calls}
    embedded = calls["amazon.titan-embed-text-v2:0"]
    assert embedded.operation == "embeddings" and embedded.input_tokens == titan["inputTextTokenCount"] and embedded.output_tokens == 0
    assert embedded.cost_usd == pytest.approx(priced(embedded)) and embedded.cost_usd > 0
    assert calls["cohere.embed-english-v3"].operation == "embeddings" and calls["cohere.embed-english-v3"].input_tokens > 0
    free = calls[MODEL]
    assert free.operation == "count_tokens" and free.cost_usd == 0.0 and free.input_tokens is None
    assert free.metadata["counted_input_tokens"] == counted["inputTokens"] and free.message_count == 1


@pytest.mark.parametrize("status, code, category", [
    (429, "ThrottlingException", "rate_limit"), (400, "ValidationException", "invalid_request"),
    (403, "AccessDeniedException", "permission"), (404, "ResourceNotFoundException", "not_found"),
    (408, "ModelTimeoutException", "timeout"), (500, "InternalServerException", "server"),
    (503, "ServiceUnavailableException", "server"), (424, "ModelErrorException", "unknown"),
])
def test_status_errors_recorded_and_reraised_unchanged(fake, log, status, code, category):
    fake.fail(status, message="fake trouble")
    with pytest.raises(ClientError) as raised:
        fake.client("bedrock").converse(modelId=MODEL, messages=MESSAGES)
    assert raised.value.response["Error"]["Code"] == code and type(raised.value).__name__ == code
    call = only(log)
    assert (call.error_type, call.error_category, call.status_code) == (code, category, status)
    assert "fake trouble" in call.error_message and call.cost_usd == 0.0 and call.response_id is None


def test_error_on_a_stream_request_and_a_timeout(fake, log):
    fake.fail(503)
    with pytest.raises(ClientError):
        fake.client("bedrock").converse_stream(modelId=MODEL, messages=MESSAGES)
    fake.fail(timeout=True)
    with pytest.raises(ReadTimeoutError):
        fake.client("bedrock").invoke_model(modelId="meta.llama3-8b-instruct-v1:0", body=b'{"prompt": "hi"}')
    failed, timed_out = sorted(log.calls, key=lambda c: c.started_at)
    assert (failed.status_code, failed.error_category, failed.chunk_count) == (503, "server", None)
    assert timed_out.error_category == "timeout"


def test_exception_frame_inside_a_stream_is_recorded_and_reraised(log):
    client = new_client()
    frames = event_stream_frames([("messageStart", {"role": "assistant"}),
                                  ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
                                  ("throttlingException", {"message": "slow down"})])
    answer(client, 200, b"".join(frames), "application/vnd.amazon.eventstream")
    with pytest.raises(EventStreamError, match="slow down"):
        for _ in client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]:
            pass
    call = only(log)
    assert (call.error_type, call.error_category, call.chunk_count) == ("EventStreamError", "rate_limit", 2)


def test_sdk_retries_show_as_attempt(fake, log, monkeypatch):
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    client = fake.client("bedrock", config=Config(retries={"total_max_attempts": 3, "mode": "standard"}))
    fake.fail(429, times=2)
    client.converse(modelId=MODEL, messages=MESSAGES)
    fake.fail(503, times=3)
    with pytest.raises(ClientError):
        client.converse_stream(modelId=MODEL, messages=MESSAGES)
    ok, failed = sorted(log.calls, key=lambda c: c.started_at)
    assert (ok.attempt, ok.error_type, ok.output_tokens) == (3, None, 5)
    assert (failed.attempt, failed.status_code, failed.error_category) == (3, 503, "server")


def test_clients_made_before_instrumenting_are_recorded(fake):
    early = new_client()  # made before tokentrail patches botocore
    stub(early, fake)
    tokentrail.instrument("bedrock")
    with tokentrail.tracking() as log:
        early.converse(modelId=MODEL, messages=MESSAGES)
    assert only(log).output_tokens == 5


def test_other_services_and_operations_pass_through(fake, log):
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x")
    s3.meta.events.register("before-send.s3.*", lambda request, **kwargs: aws_response(
        request.url, 200, {"content-type": "application/xml"}, b"<ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>"))
    assert s3.list_buckets()["Buckets"] == []
    client = new_client()
    answer(client, 200, json.dumps({"action": "NONE", "outputs": [], "assessments": []}).encode())
    client.apply_guardrail(guardrailIdentifier="g", guardrailVersion="1", source="INPUT", content=[{"text": {"text": "hi"}}])
    assert log.calls == []


def test_a_stubbed_client_is_recorded_from_its_parameters(log):
    client = new_client()
    with Stubber(client) as stubber:
        stubber.add_response("converse", {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
                                          "stopReason": "end_turn", "usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9},
                                          "metrics": {"latencyMs": 5}})
        client.converse(modelId=MODEL, messages=MESSAGES, inferenceConfig={"maxTokens": 9})
    call = only(log)
    assert (call.input_tokens, call.output_tokens, call.request_params) == (7, 2, {"maxTokens": 9})


def test_attribution_and_workflow(fake, log):
    client = fake.client("bedrock")
    with tokentrail.workflow("answer"), tokentrail.attributes(user_id="u1", customer_id="acme", feature="search", tags=["beta"], plan="pro"):
        for _ in client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]:
            pass
    call = only(log)
    assert (call.user_id, call.customer_id, call.feature, call.tags, call.workflow) == ("u1", "acme", "search", ["beta"], "answer")
    assert call.metadata["plan"] == "pro"


def test_credentials_and_content_not_kept_by_default(fake, log):
    client = fake.client("bedrock", aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    client.converse(modelId=MODEL, messages=MESSAGES)
    call = only(log)
    text = repr(tokentrail.record.to_dict(call))
    assert "wJalrXUtnFEMI" not in text and "capital of France" not in text
    assert call.input_messages is None and call.output_text is None


def test_content_captured_when_asked(fake, db_url):
    tokentrail.init(db_url, capture_content=True, content_max_chars=10)
    client = fake.client("bedrock")
    with tokentrail.tracking() as log:
        client.converse(modelId=MODEL, messages=MESSAGES, system=[{"text": "be brief"}])
        for _ in client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]:
            pass
        client.invoke_model(modelId="meta.llama3-8b-instruct-v1:0", body=json.dumps({"prompt": "Say hi"}))
    plain, streamed, invoked = sorted(log.calls, key=lambda c: c.started_at)
    assert plain.input_messages == [{"role": "system", "content": [{"text": "be brief"}]}, *MESSAGES]
    assert streamed.input_messages == MESSAGES and invoked.input_messages == [{"role": "user", "content": "Say hi"}]
    assert plain.output_text == streamed.output_text == invoked.output_text == "Hello from"


def test_uninstrument_restores_botocore(fake, log):
    tokentrail.uninstrument("bedrock")
    assert type(botocore.client.BaseClient.__dict__["_make_api_call"]).__name__ == "function"  # no wrapper left
    fake.client("bedrock").converse(modelId=MODEL, messages=MESSAGES)
    assert log.calls == []


# -- fuzz: whatever Bedrock sends, the app sees the same thing, and one record is made ----------------


def answer(client, status, body, kind="application/json", extra=None):
    """Answer every request of `client` with these bytes (registered first: it wins over any other handler)."""
    headers = {"content-type": kind, "x-amzn-requestid": "req-fuzz", "content-length": str(len(body)), **(extra or {})}
    if status >= 400:
        headers["x-amzn-errortype"] = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    client.meta.events.register_first("before-send.bedrock-runtime.*", lambda request, **kwargs: aws_response(
        request.url, status, headers, body))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
usages = json_values | st.fixed_dictionaries({}, optional={
    "inputTokens": json_values, "outputTokens": json_values, "totalTokens": json_values, "cacheReadInputTokens": json_values,
    "cacheWriteInputTokens": json_values, "input_tokens": json_values, "output_tokens": json_values,
    "inputTokenCount": json_values, "outputTokenCount": json_values})
invoke_bodies = st.fixed_dictionaries({}, optional={
    "usage": usages, "content": json_values, "stop_reason": json_values, "generation": json_values, "prompt_token_count": json_values,
    "generation_token_count": json_values, "inputTextTokenCount": json_values, "results": json_values, "outputs": json_values,
    "id": json_values, "amazon-bedrock-invocationMetrics": usages, "delta": json_values, "message": json_values,
    "output": json_values, "stopReason": json_values, "embedding": json_values})
converse_bodies = st.fixed_dictionaries({}, optional={
    "output": json_values | st.fixed_dictionaries({"message": st.fixed_dictionaries({"role": st.just("assistant"),
                                                                                   "content": st.lists(st.fixed_dictionaries({"text": st.text(max_size=5)}), max_size=2)})}),
    "stopReason": st.sampled_from(["end_turn", "tool_use", "max_tokens"]), "usage": st.fixed_dictionaries({
        "inputTokens": st.integers(0, 10**6), "outputTokens": st.integers(0, 10**6), "totalTokens": st.integers(0, 10**6)}),
    "metrics": st.fixed_dictionaries({"latencyMs": st.integers(0, 10**5)})})
converse_events = st.lists(st.one_of(
    st.tuples(st.just("contentBlockDelta"), st.fixed_dictionaries({"contentBlockIndex": st.integers(0, 3), "delta": st.fixed_dictionaries({"text": st.text(max_size=5)})})),
    st.tuples(st.just("messageStop"), st.fixed_dictionaries({"stopReason": st.sampled_from(["end_turn", "max_tokens"])})),
    st.tuples(st.just("metadata"), st.fixed_dictionaries({"usage": st.fixed_dictionaries({"inputTokens": st.integers(0, 99), "outputTokens": st.integers(0, 99),
                                                                                          "totalTokens": st.integers(0, 99)}), "metrics": st.fixed_dictionaries({"latencyMs": st.integers(0, 99)})})),
    st.tuples(st.sampled_from(["throttlingException", "modelStreamErrorException", "validationException"]), st.fixed_dictionaries({"message": st.text(max_size=5)})),
), max_size=5)
OPERATIONS = ("converse", "converse_stream", "invoke_model", "invoke_model_with_response_stream")


@st.composite
def replies(draw):
    """(operation, status, bytes): a JSON body or an event stream for the operation — torn at any byte."""
    operation = draw(st.sampled_from(OPERATIONS))
    status = draw(st.sampled_from([200, 200, 200, 400, 429, 500]))
    if operation == "converse":
        data = json.dumps(draw(converse_bodies)).encode()
    elif operation == "invoke_model":
        data = json.dumps(draw(invoke_bodies)).encode()
    elif operation == "converse_stream":
        data = b"".join(event_stream_frames(draw(converse_events)))
    else:
        chunks = chunk_events(draw(st.lists(invoke_bodies, max_size=4)), draw(usages))
        data = b"".join(event_stream_frames(chunks + draw(st.lists(st.tuples(st.just("throttlingException"), st.just({"message": "x"})), max_size=1))))
    if status >= 400:
        data = json.dumps({"message": draw(st.text(max_size=10))}).encode()
    declared = len(data)  # a torn body may still announce its whole length
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return operation, status, data, draw(st.sampled_from([declared, len(data)]))


def outcome(client, operation):
    try:
        if operation in ("converse", "converse_stream"):
            result = getattr(client, operation)(modelId=MODEL, messages=MESSAGES)
        else:
            result = getattr(client, operation)(modelId="meta.llama3-8b-instruct-v1:0", body=b'{"prompt": "hi"}')
        stream = result.pop("stream" if operation == "converse_stream" else "body", None)
        if isinstance(stream, StreamingBody):
            return "ok", repr(result), stream.read()
        return "ok", repr(result), [repr(event) for event in stream or ()]
    except Exception as exc:  # noqa: BLE001 - we compare what the app would see
        return "raised", type(exc).__name__, str(exc)


_fuzz = {}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies())
def test_fuzz_the_app_sees_the_same_results_and_one_record(reply):
    operation, status, data, length = reply
    if "client" not in _fuzz:  # one client for every example: making one takes a while
        _fuzz["client"] = new_client()
        _fuzz["client"].meta.events.register("before-send.bedrock-runtime.*", lambda request, **kwargs: aws_response(
            request.url, *_fuzz["reply"]))
    kind = "application/vnd.amazon.eventstream" if operation.endswith("stream") and status == 200 else "application/json"
    headers = {"content-type": kind, "x-amzn-requestid": "req-fuzz", "content-length": str(length)}
    if status >= 400:
        headers["x-amzn-errortype"] = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    _fuzz["reply"] = (status, headers, data)
    client = _fuzz["client"]
    tokentrail.uninstrument()
    bare = outcome(client, operation)
    tokentrail.instrument("bedrock")
    with tokentrail.tracking() as log:
        tracked = outcome(client, operation)
        gc.collect(1)
    tokentrail.uninstrument()
    assert tracked == bare
    call = only(log)
    assert call.provider == "aws.bedrock" and call.request_model in (MODEL, "meta.llama3-8b-instruct-v1:0")
    assert call.input_tokens is None or (type(call.input_tokens) is int and call.input_tokens >= 0)
    if bare[:2] == ("raised", "ThrottlingException"):  # the error answer itself (not a torn one) reached botocore
        assert (call.status_code, call.error_category) == (status, categorize_status(status))


def categorize_status(status):
    return {400: "invalid_request", 429: "rate_limit", 500: "server"}[status]


def test_a_truncated_invoke_body_fails_the_same_way_for_the_app(log):
    client = new_client()
    body = b'{"generation": "Hello", "prompt_token_count": 3, "generation_token_count": 1}'
    headers = {"content-type": "application/json", "content-length": str(len(body) + 10), "x-amzn-bedrock-input-token-count": "3",
               "x-amzn-bedrock-output-token-count": "1"}
    client.meta.events.register_first("before-send.bedrock-runtime.*", lambda request, **kwargs: aws_response(request.url, 200, headers, body))
    response = client.invoke_model(modelId="meta.llama3-8b-instruct-v1:0", body=b'{"prompt": "hi"}')
    with pytest.raises(IncompleteReadError):
        response["body"].read()
    call = only(log)
    assert (call.input_tokens, call.output_tokens, call.error_type) == (3, 1, None)  # the headers still tell the usage
