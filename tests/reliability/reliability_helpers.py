"""Shared by the reliability suite: child processes, figures, and the folders the suite wrote (for the secret scan)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[2] / "src")

# (test, figure, value) printed by each test and again in the terminal summary (tests/conftest.py).
FIGURES: list[tuple[str, str, str]] = []
# Every folder a reliability test wrote into: test_zz_secret_scan.py reads all of them.
WRITTEN: list[Path] = []


def figure(name: str, value: Any) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].rsplit("::", 1)[-1]
    FIGURES.append((test, name, str(value)))
    print(f"[figure] {name}: {value}")


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, out.get("PYTHONPATH")) if p)
    out.update(extra)
    return out


def script(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def run(code: str, cwd: Path, *args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
    WRITTEN.append(Path(cwd))
    return subprocess.run([*script(code), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env(), **kw)


def start(code: str, cwd: Path, *args: str, **kw: Any) -> subprocess.Popen:
    WRITTEN.append(Path(cwd))
    return subprocess.Popen([*script(code), *args], cwd=cwd, env=env(), text=True, **kw)


def rows(db: Path, sql: str) -> list[tuple]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
