"""A run folder: what was asked, and one result line per item, appended as each finishes.

    RUN_DIR/run.json        the run's identity: task, data file and its hash, backend, options
    RUN_DIR/results.jsonl   per item: id, the request, the raw reply, the parsed prediction, scores
    RUN_DIR/report.{json,md,html} and plots, written by ``evaluation.report`` (re-scorable any time)

A killed run loses at most the items in flight: each line is fsync'd before the next item starts,
a torn last line is cut on reopening, and a restart skips the ids already there. A folder that
holds another run (another task, data or backend) is refused rather than mixed.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DeemoError
from ..fsio import append_jsonl, atomic_write_json, read_jsonl

RESULTS = "results.jsonl"
RUN = "run.json"
IDENTITY = ("task", "data_sha256", "backend", "options")  # what must match for a restart to continue a run


class RunStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def results_file(self) -> Path:
        return self.path / RESULTS

    def info(self) -> dict:
        try:
            return json.loads((self.path / RUN).read_text())
        except FileNotFoundError:
            raise DeemoError(f"{self.path}: not an evaluation run folder (no {RUN}); make one with `deemo eval run`") from None

    def open(self, identity: dict) -> set[str]:
        """Start or continue the run ``identity`` describes; the ids of the items already done."""
        if self.path.exists() and not self.path.is_dir():
            raise DeemoError(f"--out {self.path} is a file; give a folder for the run")
        if (self.path / RUN).exists():
            old = self.info()
            diff = [k for k in IDENTITY if old.get(k) != identity.get(k)]
            if diff:
                raise DeemoError(f"{self.path} holds another run (its {', '.join(diff)} differ: {', '.join(f'{k}={old.get(k)!r}' for k in diff)[:300]}); use a new --out folder")
        elif self.path.exists() and any(self.path.iterdir()):
            raise DeemoError(f"{self.path} is not empty and holds no evaluation run; use a new --out folder")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path / RUN, identity)
        return {r["id"] for r in self.records(repair=True)}

    def append(self, record: dict) -> None:
        append_jsonl(self.results_file, record)

    def records(self, repair: bool = False) -> list[dict]:
        """The finished items, first result per id (a duplicate from a racing restart is ignored)."""
        seen, out = set(), []
        for r in read_jsonl(self.results_file, repair=repair):
            if r["id"] not in seen:
                seen.add(r["id"])
                out.append(r)
        return out
