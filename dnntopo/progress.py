"""The one progress bar of a long step: shown on a terminal (rank 0 only), quiet in logs
(standard error not a terminal) and with -q. Stages (extraction, correlation, collapse,
reduction, the DIPHA wait) reset it; callbacks of the lower layers advance it or annotate it."""
from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """A tqdm bar whose description names the current stage."""

    def __init__(self, title: str, enabled: bool = True, file=None, mininterval: float = 0.1):
        self.title = title
        # disable=None: tqdm shows the bar only when `file` is a terminal
        self.bar = tqdm(total=0, desc=title, unit="step", leave=False, file=file or sys.stderr,
                        disable=None if enabled else True, mininterval=mininterval)

    @property
    def shown(self) -> bool:
        return not self.bar.disable

    def stage(self, name: str, total: int = 0):
        """Start a stage of `total` steps (0: steps unknown, notes only)."""
        self.bar.reset(total=total or None)
        self.bar.set_description_str(f"{self.title}: {name}", refresh=False)
        self.bar.set_postfix_str("", refresh=True)

    def step(self, k: int = 1):
        self.bar.update(k)

    def note(self, text: str):
        self.bar.set_postfix_str(text, refresh=True)

    def close(self):
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
