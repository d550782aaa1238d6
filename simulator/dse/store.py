"""The on-disk results of a sweep: one JSON line per finished point, written as it finishes.

Appending whole lines (flushed and fsync'ed) means a killed sweep loses at most the point in
flight; a torn last line is ignored on reading, and `--resume` recomputes only missing points.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

POINTS = "points.jsonl"
FAILURES = "failures.jsonl"


class SweepStoreError(RuntimeError):
    """The results directory cannot be used as asked (it would lose or mix results)."""


class ResultStore:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    @property
    def points_path(self) -> Path:
        return self.dir / POINTS

    @property
    def failures_path(self) -> Path:
        return self.dir / FAILURES

    def open_for(self, resume: bool) -> None:
        """Create the directory, refusing to write into earlier results without `resume`."""
        if self.dir.exists() and not self.dir.is_dir():
            raise SweepStoreError(f"{self.dir} exists and is not a directory")
        if not resume and self.points_path.exists() and self.points_path.stat().st_size:
            raise SweepStoreError(
                f"{self.dir} already holds sweep results; pass --resume to continue that sweep "
                "or choose another output directory (nothing was changed)"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        if not resume and self.failures_path.exists():
            self.failures_path.unlink()

    def _read(self, path: Path) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        rows = []
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # torn final line from a killed writer
                    continue
                raise SweepStoreError(
                    f"{path}:{number}: not a JSON line; the file was altered"
                ) from None
            if not isinstance(row, dict) or "key" not in row:
                raise SweepStoreError(f"{path}:{number}: a result without a point key")
            rows.append(row)
        return rows

    def results(self) -> dict[str, dict[str, Any]]:
        """Finished points by key (a later line for the same key wins)."""
        return {row["key"]: row for row in self._read(self.points_path)}

    def failures(self) -> list[dict[str, Any]]:
        return self._read(self.failures_path)

    @staticmethod
    def _append(path: Path, row: dict[str, Any]) -> None:
        line = json.dumps(row, sort_keys=True) + "\n"
        with path.open("a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def add_result(self, row: dict[str, Any]) -> None:
        self._append(self.points_path, row)

    def add_failure(self, key: str, label: str, error: str) -> None:
        self._append(self.failures_path, {"key": key, "label": label, "error": error})
