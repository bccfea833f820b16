import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

import tokentrail
from tokentrail.errors import StoreError
from tokentrail.record import LLMCall, Outcome, ToolCall
from tokentrail.sinks import sqlite as sqlite_mod
from tokentrail.sinks.sqlite import SCHEMA_VERSION, SQLiteStore

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def call(i, **kw):
    base = dict(id=f"c{i:04d}", started_at=T0 + timedelta(minutes=i), duration_ms=float(i), provider="openai",
                request_model="gpt-4o", input_tokens=10, output_tokens=5)
    base.update(kw)
    return LLMCall(**base)


def test_schema_created_versioned_wal_and_indexed(tmp_path):
    store = SQLiteStore(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")  # missing folders are created
    assert store.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(tmp_path / "sub" / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "llm_calls", "tool_calls", "outcomes"} <= tables
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"ix_llm_calls_started_at", "ix_llm_calls_user_id", "ix_llm_calls_customer_id", "ix_llm_calls_feature"} <= indexes


def test_round_trip_every_field_type(tmp_path):
    store = SQLiteStore(f"sqlite:///{tmp_path / 'x.db'}")
    rich = call(1, stream=True, cache_hit=False, finish_reasons=["stop"], request_params={"temperature": 0.5},
                tags=["a", "b"], metadata={"k": [1, 2]}, input_messages=[{"role": "user", "content": "hi"}],
                cost_usd=0.0012, ttft_ms=12.5, error_category="timeout", status_code=408)
    store.export([rich, ToolCall(id="t1", name="search", started_at=T0, arguments={"q": 1}),
                  Outcome(id="o1", name="won", value=3.0, success=True, recorded_at=T0)])
    assert store.calls() == [rich]
    assert store.tool_calls()[0].arguments == {"q": 1}
    assert store.outcomes()[0].value == 3.0
    # Writing the same batch again (a retry) is harmless.
    store.export([rich])
    assert len(store.calls()) == 1


def test_calls_filters_order_and_limit(tmp_path):
    store = SQLiteStore(f"sqlite:///{tmp_path / 'x.db'}")
    store.export([call(i, customer_id="acme" if i % 2 else "globex", request_model="gpt-4o" if i < 5 else "gpt-4o-mini")
                  for i in range(10)])
    assert [c.id for c in store.calls(limit=3)] == ["c0009", "c0008", "c0007"]
    assert [c.id for c in store.calls(limit=2, order="oldest")] == ["c0000", "c0001"]
    assert len(store.calls(where={"customer_id": "acme"})) == 5
    assert len(store.calls(where={"model": ["gpt-4o-mini"], "customer": "acme"})) == 3  # 5, 7, 9
    assert len(store.calls(where={"user_id": None})) == 10
    assert [c.id for c in store.calls(since=T0 + timedelta(minutes=8))] == ["c0009", "c0008"]
    assert [c.id for c in store.calls(since="2026-11-01T12:02:00Z", until=T0 + timedelta(minutes=4), order="oldest")] == ["c0002", "c0003"]
    assert store.calls(limit=None, since=timedelta(hours=1)) == []  # all older than an hour ago
    with pytest.raises(ValueError, match="unknown field"):
        store.calls(where={"colour": "red"})
    with pytest.raises(ValueError, match="not a time"):
        store.calls(since="yesterday-ish")
    with pytest.raises(ValueError, match="order"):
        store.calls(order="sideways")


def test_summary_groups_tokens_cost_errors_and_percentiles(tmp_path):
    store = SQLiteStore(f"sqlite:///{tmp_path / 'x.db'}")
    records = [call(i, duration_ms=float(i + 1), cost_usd=0.01, customer_id="acme") for i in range(100)]
    records += [call(100 + i, request_model="claude-3-5-haiku", provider="anthropic", cost_usd=None,
                     error_category="rate_limit" if i == 0 else None, customer_id="acme", ttft_ms=100.0) for i in range(4)]
    store.export(records)
    by_model = {row["model"]: row for row in store.summary()}
    gpt = by_model["gpt-4o"]
    assert gpt["calls"] == 100 and gpt["input_tokens"] == 1000 and gpt["output_tokens"] == 500
    assert gpt["cost_usd"] == pytest.approx(1.0) and gpt["unpriced_calls"] == 0
    assert gpt["p50_ms"] == pytest.approx(50.5) and gpt["p95_ms"] == pytest.approx(95.05)
    claude = by_model["claude-3-5-haiku"]
    assert claude["cost_usd"] is None and claude["unpriced_calls"] == 4  # unknown, never a silent 0
    assert claude["errors"] == 1 and claude["error_rate"] == 0.25 and claude["ttft_p50_ms"] == 100.0
    two = store.summary(group_by=("provider", "customer"))
    assert {(r["provider"], r["customer"]) for r in two} == {("openai", "acme"), ("anthropic", "acme")}
    days = store.summary(group_by="day")
    assert [(r["day"], r["calls"]) for r in days] == [("2026-11-01", 104)]
    total = store.summary(group_by=())
    assert total[0]["calls"] == 104
    assert store.summary(since="2030-01-01") == []


def test_corrupt_file_is_reported_and_left_untouched(tmp_path):
    path = tmp_path / "broken.db"
    junk = b"this is not a database" * 100
    path.write_bytes(junk)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        tokentrail.init(f"sqlite:///{path}")
    assert path.read_bytes() == junk


def test_unwritable_store_path_fails_at_init(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        tokentrail.init(f"sqlite:///{blocker / 'inside' / 'x.db'}")


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "x.db"
    SQLiteStore(f"sqlite:///{path}").export([call(1)])
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (?, 'future')", (SCHEMA_VERSION + 1,))
    conn.commit()
    with pytest.raises(StoreError, match="newer than this tokentrail"):
        SQLiteStore(f"sqlite:///{path}")


def test_a_later_migration_runs_once_and_keeps_data(tmp_path, monkeypatch):
    path = tmp_path / "x.db"
    SQLiteStore(f"sqlite:///{path}").export([call(1)])
    future = dict(sqlite_mod.MIGRATIONS)
    future[SCHEMA_VERSION + 1] = ["ALTER TABLE llm_calls ADD COLUMN region TEXT"]
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", future)
    monkeypatch.setattr(sqlite_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    store = SQLiteStore(f"sqlite:///{path}")
    assert store.schema_version() == SCHEMA_VERSION + 1
    assert [c.id for c in store.calls()] == ["c0001"]
    SQLiteStore(f"sqlite:///{path}")  # opening again does not re-run it
    versions = sqlite3.connect(path).execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 2))


def test_foreign_tables_without_version_are_left_alone(tmp_path):
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE llm_calls (whatever TEXT)")
    conn.commit()
    with pytest.raises(StoreError, match="no schema_version"):
        SQLiteStore(f"sqlite:///{path}")


def test_memory_store(tmp_path):
    store = SQLiteStore("sqlite:///:memory:")
    store.export([call(1)])
    assert len(store.calls()) == 1


WRITER = textwrap.dedent(
    """
    import sys, tokentrail
    tokentrail.init(sys.argv[1], batch_size=50)
    for i in range(int(sys.argv[2])):
        with tokentrail.track_llm_call("openai", "gpt-4o", user_id=sys.argv[3]) as span:
            span.set_tokens(input=1, output=1)
    assert tokentrail.flush(60), "flush failed"
    """
)


def test_several_processes_writing_one_file_all_land(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, "1500", f"p{n}"]) for n in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    rows = tokentrail.open_store(url).summary(group_by="user_id")
    assert sorted((r["user_id"], r["calls"]) for r in rows) == [(f"p{n}", 1500) for n in range(4)]


def test_summary_says_why_calls_have_no_cost_and_keeps_budget_refusals_out_of_latency(tmp_path):
    from datetime import datetime, timezone

    from tokentrail.record import LLMCall

    store = SQLiteStore(f"sqlite:///{tmp_path / 'x.db'}")
    now = datetime.now(timezone.utc)
    store.export([
        LLMCall(id="a", started_at=now, duration_ms=100.0, input_tokens=10, output_tokens=2, cost_usd=0.01),
        LLMCall(id="b", started_at=now, duration_ms=300.0),  # a stream that reported no usage
        LLMCall(id="c", started_at=now, duration_ms=200.0, input_tokens=5, output_tokens=1),  # no price known
        LLMCall(id="d", started_at=now, duration_ms=0.01, error_category="budget", error_type="BudgetExceeded",
                cost_usd=0.0),
    ])
    row = store.summary(group_by=())[0]
    assert (row["unpriced_calls"], row["no_usage_calls"], row["no_price_calls"]) == (2, 1, 1)
    assert row["p50_ms"] == 200.0  # of 100, 200, 300: the refused call's 0.01 ms is not a latency


def test_a_version_1_store_migrates_to_spans_and_keeps_its_calls(tmp_path):
    """A store written before spans existed gains the table (and the trace indexes) on open."""
    from datetime import datetime, timezone

    from tokentrail.record import LLMCall, Span
    from tokentrail.sinks.schema import DIALECTS, migrations

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
    for statement in migrations(DIALECTS["sqlite"])[1]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1, 'then')")
    conn.execute("INSERT INTO llm_calls (id, provider, operation, stream, source) VALUES ('old', 'openai', 'chat', 0, 'manual')")
    conn.commit()
    conn.close()
    store = SQLiteStore(f"sqlite:///{path}")
    assert store.schema_version() == SCHEMA_VERSION >= 2
    store.export([Span(id="s1", trace_id="t" * 32, span_id="a" * 16, started_at=datetime.now(timezone.utc), name="run")])
    assert [c.id for c in store.calls()] == ["old"] and [s.name for s in store.spans()] == ["run"]


def test_a_refused_batch_is_split_so_only_the_bad_record_is_lost(tmp_path):
    from tokentrail.errors import RecordsRejected

    store = SQLiteStore(f"sqlite:///{tmp_path / 'x.db'}")
    batch = [call(i, input_tokens=2**70 if i in (3, 41) else 10) for i in range(64)]
    with pytest.raises(RecordsRejected) as caught:
        store.export(batch)
    assert caught.value.count == 2 and isinstance(caught.value.cause, OverflowError)
    assert {c.id for c in store.calls(limit=None)} == {f"c{i:04d}" for i in range(64)} - {"c0003", "c0041"}


def test_losses_are_noted_per_process_and_sink_and_read_back(tmp_path):
    store = SQLiteStore(f"sqlite:///{tmp_path / 'x.db'}")
    assert store.losses() == []
    row = {"run_id": "h:1:a", "pid": 1, "sink": "jsonl:out.jsonl", "written": 5, "dropped": 2, "failed": 0, "rejected": 0}
    store.write_stats([row])
    store.write_stats([{**row, "dropped": 3}])  # cumulative counts: the process's row is replaced
    store.write_stats([{**row, "run_id": "h:2:b", "failed": 4, "dropped": 0}])
    (noted,) = store.losses()
    assert (noted["sink"], noted["processes"], noted["dropped"], noted["failed"]) == ("jsonl:out.jsonl", 2, 3, 4)


def test_opening_a_current_store_needs_no_write_lock(tmp_path):
    path = tmp_path / "x.db"
    SQLiteStore(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        store = SQLiteStore(f"sqlite:///{path}", busy_timeout_s=0.2)  # opens without waiting for the lock
        assert store.schema_version() == SCHEMA_VERSION
    finally:
        holder.execute("ROLLBACK")


def test_a_batch_of_many_shapes_and_sizes_is_written_whole_and_once(tmp_path):
    # Rows go in as multi-row INSERTs of 2**k rows (at most 999 values a statement): every size and
    # shape must land once, a retried batch add nothing.
    store = SQLiteStore(f"sqlite:///{tmp_path / 'x.db'}")
    batch = [call(i, user_id=f"u{i}" if i % 3 else None, feature="f" if i % 5 == 0 else None,
                  metadata={"i": i} if i % 7 == 0 else None) for i in range(203)]
    store.export(batch)
    store.export(batch[100:150])
    got = {c.id: c for c in store.calls(limit=None)}
    assert len(got) == 203
    assert all((got[r.id].user_id, got[r.id].feature, got[r.id].metadata) == (r.user_id, r.feature, r.metadata) for r in batch)
    assert store.summary(group_by=(), percentiles=False)[0]["calls"] == 203


def test_the_row_codec_binds_exactly_the_columns_a_record_has():
    """The generated codec (schema._compile): each column's bit and value, the encoders applied, the
    first and the last column too; a record with every field set and one with only its id."""
    from datetime import datetime, timezone

    from tokentrail.record import FIELDS
    from tokentrail.sinks.schema import DIALECTS, TableCodec

    codec = TableCodec(LLMCall, DIALECTS["sqlite"])
    columns = FIELDS[LLMCall]
    full = LLMCall(id="a", trace_id="t", started_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
                   finish_reasons=["stop"], request_params={"temperature": 0.5}, tags=["x"], metadata={"k": 1},
                   input_messages=[{"role": "user", "content": "hi"}], sdk_version="1.2", user_id="u",
                   input_tokens=3, output_tokens=4, stream=True)
    row = codec.row(full)
    assert len(row) == len(columns) and row[columns.index("sdk_version")] == "1.2"
    assert row[columns.index("started_at")] == "2026-01-02T03:04:05.000006+00:00"
    assert row[columns.index("request_params")] == '{"temperature":0.5}'
    assert row[columns.index("finish_reasons")] == '["stop"]' and row[columns.index("total_tokens")] == 7
    (sql, rows), = codec.batches([full])
    named = [c for c, v in zip(columns, row) if v is not None]
    assert sql.startswith(f"INSERT OR IGNORE INTO llm_calls ({', '.join(named)}) VALUES (")
    assert rows == [[v for v in row if v is not None]]
    bare = LLMCall(id="b", provider=None, operation=None, stream=None, source=None)
    (sql, rows), = codec.batches([bare])
    assert sql == "INSERT OR IGNORE INTO llm_calls (id) VALUES (?)" and rows == [["b"]]
    # Two shapes in one batch: two statements, each row under its own.
    assert len(codec.batches([full, bare, full])) == 2
