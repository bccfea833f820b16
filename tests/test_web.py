"""web/server.py: the dashboard's JSON API through starlette's TestClient, over real SQLite stores written
through tokentrail's own API (`log_llm_call` into a `sqlite:///` store)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the ui extra")
from starlette.testclient import TestClient  # noqa: E402

import tokentrail  # noqa: E402
from tokentrail import report  # noqa: E402
from tokentrail.errors import StoreError  # noqa: E402
from tokentrail.web import server  # noqa: E402

NOW = datetime.now(timezone.utc).replace(microsecond=0)
# (minutes ago, provider, model, customer, feature, input, output, duration ms, error)
CALLS = [
    (5, "openai", "gpt-4o-mini", "acme", "chat", 1000, 100, 120.0, None),
    (65, "openai", "gpt-4o-mini", "acme", "search", 2000, 300, 250.0, None),
    (130, "anthropic", "claude-3-5-haiku-latest", "globex", "chat", 4000, 500, 900.0, None),
    (200, "openai", "gpt-4o", "globex", "support", 3000, 800, 1500.0, None),
    (60 * 30, "anthropic", "claude-sonnet-4-6", "initech", "support", 8000, 1200, 3000.0, None),
    (60 * 50, "openai", "gpt-4o", "acme", "chat", 500, 0, 50.0, "unknown"),  # a bare message: category unknown
    (60 * 24 * 3, "openai", "gpt-4o-mini", "initech", "chat", 700, 70, 80.0, "timeout"),
    (60 * 24 * 3 + 5, "openai", "gpt-4o-mini", "initech", "chat", 700, 70, 85.0, "timeout"),
]


def record(url: str, extra: int = 0, capture: bool = False) -> None:
    tokentrail.init(store=url, instrument=False, capture_content=capture)
    for ago, provider, model, customer, feature, tin, tout, ms, error in CALLS:
        tokentrail.log_llm_call(
            provider=provider, model=model, usage={"input_tokens": tin, "output_tokens": tout}, duration_ms=ms,
            started_at=NOW - timedelta(minutes=ago), customer_id=customer, feature=feature, user_id=f"u-{customer}",
            prompt="what is my invoice?", response="it is $12" if not error else None,
            error=None if error is None else (TimeoutError("slow") if error == "timeout" else "429 Too Many Requests"),
        )
    for i in range(extra):
        tokentrail.log_llm_call(provider="openai", model="gpt-4o-mini", usage={"input_tokens": 10 + i, "output_tokens": 1},
                                duration_ms=10.0, started_at=NOW - timedelta(minutes=60 * 24 * 5 + i), customer_id="bulk")
    with tokentrail.workflow("ticket", customer_id="acme") as run:
        tokentrail.log_llm_call(provider="openai", model="gpt-4o-mini", usage={"input_tokens": 100, "output_tokens": 10},
                                duration_ms=40.0, customer_id="acme", feature="ticket")
        run.emit_outcome("resolved", value=1)
    assert tokentrail.flush(10)
    tokentrail.shutdown()


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    record(url, extra=120)
    return url


@pytest.fixture
def client(store):
    return TestClient(server.create_app(store))


def direct(url: str, sql: str) -> list:
    with sqlite3.connect(report.store_path(url)) as db:
        return db.execute(sql).fetchall()


def test_summary_totals_match_the_store(client, store):
    body = client.get("/api/summary").json()
    calls, cost, tokens, errors = direct(store, "SELECT COUNT(*), SUM(cost_usd), SUM(total_tokens), "
                                               "SUM(error_category IS NOT NULL) FROM llm_calls")[0]
    totals = body["totals"]
    assert body["empty"] is False and body["store"] == store
    assert totals["calls"] == calls == len(CALLS) + 120 + 1
    assert totals["cost_usd"] == pytest.approx(cost) and cost > 0
    assert totals["total_tokens"] == tokens
    assert totals["errors"] == errors == 3
    assert totals["error_rate"] == pytest.approx(3 / calls)
    assert totals["p95_ms"] is not None and totals["p95_ms"] > totals["p50_ms"]


def test_summary_range_and_filters(client):
    day = client.get("/api/summary?since=24h").json()["totals"]
    assert day["calls"] == 5  # the calls of the last 24 hours: four at the top of CALLS and the workflow's
    acme = client.get("/api/summary?customer=acme").json()["totals"]
    assert acme["calls"] == 4
    both = client.get("/api/summary?customer=acme,globex&status=error").json()["totals"]
    assert both["calls"] == 1 and both["errors"] == 1


def test_timeseries_stacks_cost_and_calls_by_model_and_provider(client, store):
    body = client.get("/api/timeseries?bucket=hour&stack=model&since=6h").json()
    assert body["bucket"] == "hour" and body["stack"] == "model"
    labels = [b["label"] for b in body["buckets"]]
    assert len(labels) in (6, 7) and labels == sorted(labels)  # empty hours filled in
    assert [b["start"] for b in body["buckets"]] == sorted(b["start"] for b in body["buckets"])
    total_calls = sum(sum(s["calls"]) for s in body["series"])
    assert total_calls == client.get("/api/summary?since=6h").json()["totals"]["calls"]
    keys = {s["key"] for s in body["series"]}
    assert {"gpt-4o-mini", "gpt-4o"} <= keys
    days = client.get("/api/timeseries?bucket=day&stack=provider").json()
    cost = sum(sum(s["cost_usd"]) for s in days["series"])
    assert cost == pytest.approx(direct(store, "SELECT SUM(cost_usd) FROM llm_calls")[0][0])
    assert {s["key"] for s in days["series"]} == {"openai", "anthropic"}
    top = client.get("/api/timeseries?bucket=day&stack=model&top=1").json()
    assert [s["key"] for s in top["series"]][-1] == "other" and len(top["series"]) == 2


def test_breakdowns_by_each_dimension(client):
    for by, key, expected in [("model", "model", "claude-sonnet-4-6"), ("provider", "provider", "anthropic"),
                              ("customer", "customer", "initech"), ("user", "user", "u-initech"),
                              ("feature", "feature", "support"), ("workflow", "workflow", "ticket")]:
        rows = client.get(f"/api/breakdown?by={by}").json()["rows"]
        assert expected in [r[key] for r in rows], (by, rows)
        assert sum(r["calls"] for r in rows) == len(CALLS) + 121
    rows = client.get("/api/breakdown?by=model").json()["rows"]
    assert rows[0]["cost_usd"] >= rows[-1]["cost_usd"]  # costliest first


def test_a_breakdown_lists_the_costliest_groups_and_sums_the_rest(client):
    every = client.get("/api/breakdown?by=user").json()
    assert every["rest"] is None and len(every["rows"]) > 2
    top = client.get("/api/breakdown?by=user&top=2").json()
    assert top["rows"] == every["rows"][:2]
    left = every["rows"][2:]
    assert top["rest"]["groups"] == len(left) and top["rest"]["calls"] == sum(r["calls"] for r in left)
    assert top["rest"]["cost_usd"] == pytest.approx(sum(r["cost_usd"] or 0 for r in left))
    assert top["rest"]["total_tokens"] == sum(r["total_tokens"] or 0 for r in left)
    assert client.get("/api/breakdown?by=user&top=0").status_code == 400


def test_outcomes_have_cost_per_outcome(client):
    rows = client.get("/api/outcomes").json()["rows"]
    assert [(r["workflow"], r["outcome"], r["count"]) for r in rows] == [("ticket", "resolved", 1)]
    assert rows[0]["cost_per_outcome_usd"] == pytest.approx(rows[0]["cost_usd"]) and rows[0]["cost_usd"] > 0


def test_calls_page_sort_filter_and_paging(client, store):
    first = client.get("/api/calls?limit=50").json()
    assert first["total"] == len(CALLS) + 121 and len(first["calls"]) == 50
    starts = [c["started_at"] for c in first["calls"]]
    assert starts == sorted(starts, reverse=True)
    second = client.get("/api/calls?limit=50&offset=50").json()
    assert not {c["id"] for c in first["calls"]} & {c["id"] for c in second["calls"]}
    everything = set()
    for offset in range(0, first["total"], 50):
        everything |= {c["id"] for c in client.get(f"/api/calls?limit=50&offset={offset}&sort=-cost_usd").json()["calls"]}
    assert len(everything) == first["total"]  # the pages of a field sort cover every call once
    by_cost = client.get("/api/calls?sort=-cost_usd&limit=3").json()["calls"]
    assert by_cost[0]["cost_usd"] == pytest.approx(direct(store, "SELECT MAX(cost_usd) FROM llm_calls")[0][0])
    assert [c["cost_usd"] for c in by_cost] == sorted((c["cost_usd"] for c in by_cost), reverse=True)
    cheap = client.get("/api/calls?sort=duration_ms&limit=2").json()["calls"]
    assert cheap[0]["duration_ms"] <= cheap[1]["duration_ms"]
    globex = client.get("/api/calls?customer=globex").json()
    assert globex["total"] == 2 and {c["customer_id"] for c in globex["calls"]} == {"globex"}
    failed = client.get("/api/calls?status=error").json()
    assert failed["total"] == 3 and all(c["error_category"] for c in failed["calls"])
    timeouts = client.get("/api/calls?error_category=timeout&model=gpt-4o-mini").json()
    assert timeouts["total"] == 2
    assert all("input_messages" not in c for c in first["calls"])  # content stays out of the list


def test_call_detail_has_every_field_and_content_only_if_captured(tmp_path, client):
    some = client.get("/api/calls?customer=initech&feature=support").json()["calls"][0]
    detail = client.get(f"/api/calls/{some['id']}").json()["call"]
    assert detail["id"] == some["id"] and detail["request_model"] == "claude-sonnet-4-6"
    assert {"input_tokens", "cost_usd", "error_category", "trace_id", "metadata"} <= set(detail)
    assert detail["input_messages"] is None and detail["output_text"] is None  # not captured
    assert client.get(f"/api/calls/{some['id'][:20]}").json()["call"]["id"] == some["id"]  # a unique prefix
    captured = f"sqlite:///{tmp_path / 'captured.db'}"
    record(captured, capture=True)
    other = TestClient(server.create_app(captured))
    one = other.get("/api/calls?limit=1&status=ok&feature=chat").json()["calls"][0]
    assert one["has_content"] is True
    full = other.get(f"/api/calls/{one['id']}").json()["call"]
    assert full["output_text"] == "it is $12" and full["input_messages"]


def test_errors_grouped_by_category(client):
    rows = client.get("/api/errors").json()["rows"]
    assert [(r["category"], r["calls"]) for r in rows] == [("timeout", 2), ("unknown", 1)]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert client.get("/api/errors?since=24h").json()["rows"] == []


def test_trace_values_and_cursor(client, store):
    run = client.get("/api/calls?feature=ticket").json()["calls"][0]
    tree = client.get(f"/api/trace/{run['workflow_run_id']}").json()
    assert tree["workflow"] == "ticket" and tree["totals"]["llm_calls"] == 1
    values = client.get("/api/values?field=customer").json()["values"]
    assert values[0] == "bulk" and set(values) == {"bulk", "acme", "globex", "initech"}
    before = client.get("/api/cursor").json()["cursor"]
    tokentrail.init(store=store, instrument=False)
    tokentrail.log_llm_call(provider="openai", model="gpt-4o", usage={"input_tokens": 1, "output_tokens": 1})
    tokentrail.flush(10)
    tokentrail.shutdown()
    assert client.get("/api/cursor").json()["cursor"] > before  # what the page's live refresh watches


def test_what_if_and_cache_savings(client, store):
    body = client.get("/api/reprice?to=gpt-4o-mini&by=customer").json()
    assert body["model"] == "gpt-4o-mini"
    assert {r["customer"] for r in body["rows"]} == {"acme", "globex", "initech", "bulk"}
    assert body["totals"]["cost_usd"] == pytest.approx(direct(store, "SELECT SUM(cost_usd) FROM llm_calls")[0][0])
    assert body["totals"]["saving_usd"] > 0  # gpt-4o-mini is cheaper than what most of these calls went to
    assert client.get("/api/reprice?to=gpt-4o-mini&since=24h&customer=globex").json()["totals"]["calls"] == 2
    only_4o = client.get("/api/reprice?to=gpt-4o-mini&model=gpt-4o").json()  # `model` filters the calls repriced
    assert only_4o["totals"]["calls"] == 2 and only_4o["totals"]["saving_usd"] > 0
    assert client.get("/api/cache").json() == {"by": ["model"], "rows": []}  # no cache traffic in this store


@pytest.mark.parametrize("path, message", [
    ("/api/calls?limit=ten", "limit"),
    ("/api/calls?offset=-1", "offset"),
    ("/api/calls?limit=5000", "1000"),
    ("/api/calls?sort=price", "order"),
    ("/api/summary?since=yesterdayish", "not a time"),
    ("/api/summary?since=2d&until=3d", "before"),
    ("/api/summary?status=maybe", "status"),
    ("/api/breakdown?by=planet", "break down"),
    ("/api/timeseries?bucket=week", "bucket"),
    ("/api/timeseries?stack=planet", "stack"),
    ("/api/timeseries?top=0", "top"),
    ("/api/values?field=password", "field"),
    ("/api/reprice", "name a model"),
    ("/api/reprice?to=no-such-model-9", "no price known"),
    ("/api/cache?by=planet", "break down"),
])
def test_malformed_parameters_get_a_400_with_a_json_error(client, path, message):
    answer = client.get(path)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


def test_an_unknown_call_is_404(client):
    answer = client.get("/api/calls/ffffffffffffffff")
    assert answer.status_code == 404 and "no call" in answer.json()["error"]


def test_the_page_and_its_assets_are_served_by_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>tokentrail</title>" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN
    for asset in ("static/app.js", "static/app.css", "static/uPlot.iife.min.js", "static/uPlot.min.css", "static/uPlot.LICENSE"):
        assert asset.rsplit("/", 1)[1] in page.text or asset.endswith("LICENSE")
        answer = client.get("/" + asset)
        assert answer.status_code == 200 and len(answer.content) > 500, asset


def test_an_empty_store_says_so(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    tokentrail.open_store(url).close()
    client = TestClient(server.create_app(url))
    body = client.get("/api/summary").json()
    assert body["empty"] is True and body["totals"] is None
    assert client.get("/api/calls").json() == {"calls": [], "total": 0, "offset": 0, "limit": 50, "sort": "newest"}
    assert client.get("/api/timeseries").json()["series"] == []
    assert "No calls recorded yet" in client.get("/").text


def test_a_store_from_a_newer_tokentrail_is_refused(store):
    from tokentrail.sinks.schema import SCHEMA_VERSION

    direct(store, f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION + 1}, '2030-01-01')")
    with pytest.raises(StoreError, match="newer"):
        server.create_app(store)


def test_a_missing_store_is_refused(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        server.create_app(tmp_path / "nothing.db")


# -- the token gate -----------------------------------------------------------------------------------------


def test_the_token_gate_refuses_requests_without_the_token(store):
    client = TestClient(server.create_app(store, token="s3cret"))
    for path in ("/", "/api/summary", "/api/calls", "/static/app.js"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert "token" in answer.json()["error"]
    assert client.get("/api/summary?token=wrong").status_code == 401
    assert client.get("/api/summary", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/summary", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_the_token_in_the_url_sets_a_cookie_for_the_page(store):
    client = TestClient(server.create_app(store, token="s3cret"))
    page = client.get("/?token=s3cret")
    assert page.status_code == 200 and "httponly" in page.headers["set-cookie"].lower()
    assert client.get("/api/summary").status_code == 200  # the cookie carries it from now on
    client.cookies.clear()
    assert client.get("/api/summary").status_code == 401


def test_loopback_binds_refuse_foreign_host_headers(store):
    client = TestClient(server.create_app(store, allowed_hosts=("127.0.0.1",)), base_url="http://127.0.0.1:8437")
    assert client.get("/api/cursor").status_code == 200
    assert client.get("/api/cursor", headers={"host": "localhost:8437"}).status_code == 200
    assert client.get("/api/cursor", headers={"host": "evil.example:8437"}).status_code == 403


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                                            ("0.0.0.0", False), ("192.168.1.5", False), ("::", False), ("example.com", False)])
def test_is_loopback(host, loopback):
    assert server.is_loopback(host) is loopback


def test_serve_generates_and_prints_a_token_for_other_addresses(store, monkeypatch):
    seen = {}

    def fake_run(app, host, port, log_level):
        seen.update(app=app, host=host, port=port)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    lines: list[str] = []
    server.serve(store, host="0.0.0.0", port=9999, open_browser=False, echo=lines.append)
    token = lines[0].split("?token=")[1]
    assert len(token) >= 20 and seen["host"] == "0.0.0.0" and seen["port"] == 9999
    client = TestClient(seen["app"])
    assert client.get("/api/summary").status_code == 401
    assert client.get(f"/api/summary?token={token}").status_code == 200
    lines.clear()
    server.serve(store, open_browser=False, echo=lines.append)
    assert "?token=" not in lines[0] and lines[0].endswith("http://127.0.0.1:8437/")
    assert TestClient(seen["app"], base_url="http://127.0.0.1:8437").get("/api/summary").status_code == 200


def test_the_wheel_ships_the_page_and_its_assets(tmp_path):
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(server.__file__).resolve().parents[3]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-q", "-w", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    if built.returncode != 0 and "hatchling" in built.stderr:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    for asset in ("index.html", "app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE"):
        assert f"tokentrail/web/static/{asset}" in names
