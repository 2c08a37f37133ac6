"""Run every `bench/bench_*.py` in its own process, print one table, write `bench/results.json`.

Each script runs in a fresh interpreter so that memory figures (peak RSS) are its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from bench.report import format_table, read_rows  # noqa: E402


def main(argv: list[str]) -> int:
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(pattern in s.stem for pattern in argv)]
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.jsonl"
        env = {**os.environ, "BENCH_ROWS_FILE": str(rows_file), "PYTHONPATH": str(BENCH_DIR.parent)}
        for script in scripts:
            print(f"== {script.name}", flush=True)
            if subprocess.run([sys.executable, "-m", f"bench.{script.stem}"], env=env, cwd=BENCH_DIR.parent).returncode:
                failed.append(script.name)
        rows = read_rows(rows_file)
    print("\n" + format_table(rows))
    results_path = BENCH_DIR / "results.json"
    # A partial run (`make bench BENCH=ml`) replaces its own rows and keeps the other benches' rows.
    results = json.loads(results_path.read_text()) if argv and results_path.exists() else {}
    results.update(
        {r.name: {"value": r.value, "unit": r.unit, "goal": r.goal, "conditions": r.conditions} for r in rows}
    )
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
