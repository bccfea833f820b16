"""Every ```python block in the README runs as written (each in a fresh process and directory)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
# LiteLLM and DSPy need openai < 3: their snippets run in the second test environment (.ci/run, `-k openai2`).
OPENAI2_ONLY = ("litellm", "dspy")


def imported(block: str) -> set[str]:
    return set(re.findall(r"^(?:import|from) (\w+)", block, re.M)) | {
        name for line in re.findall(r"^import (.+)$", block, re.M) for name in re.findall(r"(\w+)(?:,|$)", line)}


def snippet_id(index: int) -> str:
    return f"{index}-{'openai2' if imported(BLOCKS[index]) & set(OPENAI2_ONLY) else 'main'}"


def test_readme_has_snippets():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=snippet_id)
def test_readme_snippet_runs(index, tmp_path):
    for package in sorted(imported(BLOCKS[index]) & set(OPENAI2_ONLY)):
        pytest.importorskip(package, reason=f"{package} runs in the openai<3 environment (.ci/run)")
    result = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"snippet {index}:\n{BLOCKS[index]}\n{result.stderr}"


def test_quickstart_example_runs(tmp_path):
    example = README.parent / "examples" / "quickstart.py"
    result = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "claude-3-5-haiku-latest" in result.stdout and "timeout" in result.stdout
