"""Metric rows of a training run: kept in memory, handed to a callback, appended to a
JSON-lines file.

Pretraining, SFT and GRPO log the same way (one row per logged step); a run directory's
``metrics.jsonl`` (or ``grpo.jsonl``) is the record, and ``csv`` also keeps a spreadsheet copy.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


class MetricsLog:
    """``rows``, in order; ``append`` also calls ``on_row`` and writes ``path``
    (and ``csv_path``)."""

    def __init__(self, path: str | Path | None = None,
                 on_row: Callable[[dict[str, float]], None] | None = None,
                 csv_path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.csv_path = Path(csv_path) if csv_path is not None else None
        self.on_row = on_row
        self.rows: list[dict[str, float]] = []

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.csv_path is not None:
            # rewritten whole: evaluation rows add columns (val_loss, ...) that the first rows lack
            fields = list(dict.fromkeys(k for r in self.rows for k in r))
            with open(self.csv_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(self.rows)

    def clear_files(self) -> None:
        """Delete the files (a fresh run, not appended to an old log)."""
        for p in (self.path, self.csv_path):
            if p is not None:
                p.unlink(missing_ok=True)

    def read(self, max_step: int) -> None:
        """Load the rows of ``path`` up to ``max_step`` (a resumed run continues its log)."""
        self.rows = []
        if self.path is not None and self.path.exists():
            self.rows = [r for r in read_jsonl(self.path) if r["step"] <= max_step]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


__all__ = ["MetricsLog", "read_jsonl"]
