"""The one place a run logs: TensorBoard scalars with stable names and a metrics.jsonl line per epoch."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from torch.utils.tensorboard import SummaryWriter

from nni_offpolicy.files.atomic import atomic_append_line, atomic_write_text


class RunLogger:
    def __init__(self, output_dir: str | Path, purge_step: int | None = None, jsonl_lines: int | None = None):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.dir / "tensorboard"), purge_step=purge_step)
        self.jsonl = self.dir / "metrics.jsonl"
        if jsonl_lines is not None and self.jsonl.exists():
            # a resumed run rewrites what the killed run logged after its last checkpoint
            lines = self.jsonl.read_text().splitlines()[:jsonl_lines]
            atomic_write_text("".join(line + "\n" for line in lines), self.jsonl)
        self.lines = len(self.jsonl.read_text().splitlines()) if self.jsonl.exists() else 0

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        for name, value in values.items():
            if value is not None:
                self.writer.add_scalar(f"{prefix}{name}", float(value), step)

    def record(self, record: Mapping[str, Any]) -> None:
        atomic_append_line(json.dumps(record), self.jsonl)  # a kill mid-write never leaves half a line
        self.lines += 1
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
