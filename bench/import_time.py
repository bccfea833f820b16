"""How long `import tokentrail` takes: fresh interpreters, alternating with a bare one.

    python bench/import_time.py [runs]

Each pair starts `python -c pass` and `python -c "import tokentrail"` (in
alternating order) and times both as whole processes; the figure is the
median of the differences, so the interpreter's own start-up and the
machine's drift cancel out. Also printed: which tokentrail-imported modules
cost most, from `python -X importtime`.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time


def run(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    diffs = []
    for i in range(runs):
        order = ("pass", "import tokentrail") if i % 2 == 0 else ("import tokentrail", "pass")
        times = {code: run(code) for code in order}
        diffs.append(times["import tokentrail"] - times["pass"])
    print(f"import tokentrail: +{statistics.median(diffs) * 1000:.1f} ms over a bare interpreter "
          f"(median of {runs} pairs; p10 {statistics.quantiles(diffs, n=10)[0] * 1000:.1f} ms)")
    report = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tokentrail"], capture_output=True, text=True).stderr
    rows = [(int(m.group(2)), m.group(3)) for m in re.finditer(r"import time:\s+(\d+) \|\s+(\d+) \| (.*)", report)]
    top = sorted((r for r in rows if r[1].startswith("  ") and not r[1].startswith("   ")), reverse=True)[:6]
    print("largest imports under tokentrail (cumulative, one run, -X importtime):")
    for micros, name in top:
        print(f"  {micros / 1000:6.1f} ms  {name.strip()}")


if __name__ == "__main__":
    main()
