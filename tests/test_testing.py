"""tokentrail.testing over real HTTP: the server, and the command that starts it."""

import socket
import subprocess
import sys
import time

import anthropic
import openai

import tokentrail
from tokentrail.testing import FakeProvider


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_speaks_both_wire_formats_and_streams_over_http(log):
    fake = FakeProvider(frame_delay=0.001)
    with fake.serve() as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
        stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
                                                stream_options={"include_usage": True})
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from the fake provider."
        claude = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
            assert s.get_final_message().usage.output_tokens == 5
        fake.fail(429, retry_after=0)
        try:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        except openai.RateLimitError as exc:
            assert exc.response.headers["retry-after"] == "0"
        forced = client.with_options(max_retries=0).chat.completions
        try:
            forced.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-fake-error": "503"})
        except openai.InternalServerError as exc:
            assert exc.status_code == 503
    categories = sorted(str(c.error_category) for c in log.calls)
    assert categories == ["None", "None", "rate_limit", "server"]
    assert all(c.output_tokens == 5 for c in log.calls if c.error_category is None)


def test_python_m_tokentrail_testing_serve(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tokentrail.testing", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.model == "gpt-4o-mini-2024-07-18" and reply.usage.completion_tokens == 5
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_http_fake_serves_every_providers_routes():
    import httpx

    from tokentrail.testing import FakeProvider

    with FakeProvider().serve() as url:
        ollama = httpx.post(f"{url}/api/chat", json={"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False})
        groq = httpx.post(f"{url}/openai/v1/chat/completions", json={"model": "llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "hi"}]})
    assert ollama.status_code == 200 and ollama.json()["done"] is True
    assert groq.status_code == 200 and "x_groq" in groq.json()
