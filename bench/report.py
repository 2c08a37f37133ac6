"""One table format for every benchmark, so `make bench` can gather rows from separate processes.

A benchmark script builds `BenchRow`s and calls `emit(rows)`. Run alone it prints its table;
run by `bench/run.py` it also appends its rows to the file named by `BENCH_ROWS_FILE`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchRow:
    name: str
    value: float
    unit: str
    goal: str
    conditions: str


def format_table(rows: list[BenchRow]) -> str:
    header = ("figure", "value", "unit", "goal", "conditions")
    cells = [header] + [(r.name, f"{r.value:.4g}", r.unit, r.goal, r.conditions) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(rows: list[BenchRow]) -> None:
    print(format_table(rows), flush=True)
    target = os.environ.get("BENCH_ROWS_FILE")
    if target:
        with Path(target).open("a") as fh:
            for row in rows:
                fh.write(json.dumps(asdict(row)) + "\n")


def read_rows(path: Path) -> list[BenchRow]:
    if not path.exists():
        return []
    return [BenchRow(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
