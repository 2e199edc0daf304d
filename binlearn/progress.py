"""A dependency-free progress line on stderr (redrawn in place on a terminal, sparse lines otherwise)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``Progress(total, "simulate")``; call ``update(n, **stats)`` then ``close()``."""

    def __init__(self, total: int, label: str, enabled: bool = True, stream=None):
        self.total, self.label, self.enabled = max(int(total), 1), label, enabled
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.open_line = False  # a tty line is drawn and not yet ended

    def update(self, done: int, unit: str = "it", **stats) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        final = done >= self.total
        # On a pipe print at most every 10 s, so logs stay readable.
        if not final and now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        width = 24
        fill = int(width * min(done, self.total) / self.total)
        extra = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items())
        eta = (self.total - done) / rate if rate > 0 else 0.0
        line = (f"{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} "
                f"{rate:.2f} {unit}/s eta {eta:.0f}s {extra}")
        if self.tty:
            self.stream.write("\r" + line.ljust(100) + ("\n" if final else ""))
            self.open_line = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self.open_line:
            self.open_line = False
            self.stream.write("\n")
            self.stream.flush()
