"""No key string in any file tokentrail writes: the demo's, an app's that hands tokentrail keys every way it can
(client keys, key-echoing provider errors, content, attribution, metadata, a key passed where a number was
expected), and every file the reliability suite wrote before this module (it runs last: `zz`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from reliability_helpers import WRITTEN, env, figure, run

KEY = re.compile(rb"sk-(?:ant-|proj-|svcacct-)?[A-Za-z0-9_\-]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}")

LEAKY_APP = """
import json, sys, tokentrail
from tokentrail.testing import FakeProvider
OPENAI_KEY, ANTHROPIC_KEY, AWS = "sk-proj-" + "Q" * 8 + "w3e4r5t6y7u8i9o0", "sk-ant-api03-" + "Zz9Yy8Xx7Ww6Vv5Uu4", "AKIA" + "QWERTYUIOPASDFGH"
tokentrail.init("sqlite:///leaky.db", exporters=["jsonl:leaky.jsonl", "console"], capture_content=True)
fake = FakeProvider()
gpt, claude = fake.openai_client(api_key=OPENAI_KEY), fake.anthropic_client(api_key=ANTHROPIC_KEY)
prompt = [{"role": "user", "content": f"my keys are {OPENAI_KEY} and {AWS}, Bearer {ANTHROPIC_KEY}"}]
with tokentrail.attributes(user_id=OPENAI_KEY, tags=[AWS], session_id=ANTHROPIC_KEY, note=f"key={OPENAI_KEY}",
                           api_key=OPENAI_KEY, headers={"Authorization": f"Bearer {OPENAI_KEY}"}):
    gpt.chat.completions.create(model="gpt-4o", messages=prompt, user=OPENAI_KEY, extra_headers={"x-api-key": AWS})
    for _ in gpt.chat.completions.create(model="gpt-4o", messages=prompt, stream=True):
        pass
    claude.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=prompt, metadata={"user_id": OPENAI_KEY})
    fake.fail(401, message=f"Incorrect API key provided: {OPENAI_KEY}")
    try:
        gpt.chat.completions.create(model="gpt-4o", messages=prompt)
    except Exception:
        pass
    fake.fail(403, message=f"invalid x-api-key {ANTHROPIC_KEY} for {AWS}")
    try:
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=prompt)
    except Exception:
        pass
    tokentrail.log_llm_call(provider="openai", model="gpt-4o", prompt=prompt, response=f"echo {AWS}",
                            usage={"input_tokens": OPENAI_KEY, "output_tokens": 2}, error=RuntimeError(f"key {OPENAI_KEY}"))
    with tokentrail.track_tool_call("lookup", arguments={"token": OPENAI_KEY, "q": f"{AWS}"}) as tool:
        tool.set_result({"secret": ANTHROPIC_KEY, "text": f"found {OPENAI_KEY}"})
    tokentrail.emit_outcome("done", note=OPENAI_KEY)
assert tokentrail.flush(10)
"""


def scan(folder: Path) -> tuple[int, list[str]]:
    files, found = 0, []
    for path in folder.rglob("*"):
        if path.is_file():
            files += 1
            for match in KEY.finditer(path.read_bytes()):
                found.append(f"{path}: {match.group(0)[:12]!r}")
    return files, found


def test_no_key_in_any_file_the_demo_an_app_handing_over_keys_and_the_suite_wrote(tmp_path):
    demo = tmp_path / "demo"
    demo.mkdir()
    result = subprocess.run([sys.executable, "-m", "tokentrail.cli", "demo"], cwd=demo, capture_output=True, timeout=180, env=env())
    assert result.returncode == 0, result.stderr
    (demo / "demo.stdout").write_bytes(result.stdout + result.stderr)
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    result = run(LEAKY_APP, leaky)
    assert result.returncode == 0, result.stderr
    (leaky / "app.stderr").write_text(result.stderr + result.stdout)  # the console exporter's lines and the log
    control = tmp_path / "control"
    control.mkdir()
    (control / "keys.txt").write_text("sk-proj-" + "Q" * 8 + "w3e4r5t6y7u8i9o0 " + "AKIA" + "QWERTYUIOPASDFGH")
    assert len(scan(control)[1]) == 2  # the app's keys, written raw, are what the scan finds
    folders = list(dict.fromkeys([demo, leaky, *(p for p in WRITTEN if p.exists())]))
    files, found = 0, []
    for folder in folders:
        n, hits = scan(folder)
        files += n
        found += hits
    figure("secret scan", f"{files:,} files in {len(folders)} folders (the demo's, an app handing over keys every way, "
           f"and the suite's): {len(found)} key strings")
    assert not found, found
