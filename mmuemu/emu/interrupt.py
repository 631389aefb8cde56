"""Ctrl-C during emulation: stop Unicorn from a watcher thread.

Python runs a signal handler only between bytecodes of the main thread. A
guest whose loop never calls back into Python (every translation served
by the native fill, no syscalls) keeps the main thread inside
``uc_emu_start`` for as long as it likes, so SIGINT would wait for the
guest. :class:`InterruptWatcher` installs a SIGINT handler that only
records the signal, and points Python's wakeup fd at a pipe that a daemon
thread reads: the C-level handler writes the signal number there at once,
the thread wakes (``emu_start`` has released the GIL) and calls
``uc.emu_stop()``. The run loop then sees :attr:`InterruptWatcher.fired`
and ends the run as interrupted, so the trace and the stats are still
written. Outside the main thread (where signals cannot be handled) it does
nothing.
"""
from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Callable, Optional

_STOP = b"\xff"


class InterruptWatcher:
    """While active, SIGINT stops ``stop()`` (Unicorn's ``emu_stop``) and sets :attr:`fired`."""

    def __init__(self, stop: Callable[[], Any]) -> None:
        self._stop = stop
        self.fired = False
        self._old_handler: Any = None
        self._old_wakeup = -1
        self._pipe: Optional[tuple[int, int]] = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "InterruptWatcher":
        if threading.current_thread() is not threading.main_thread():
            return self
        r, w = os.pipe()
        os.set_blocking(w, False)
        try:
            self._old_handler = signal.signal(signal.SIGINT, self._on_signal)
            self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):
            os.close(r)
            os.close(w)
            return self
        self._pipe = (r, w)
        self._thread = threading.Thread(target=self._watch, name="mmuemu-sigint",
                                        daemon=True)
        self._thread.start()
        return self

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        self.fired = True

    def _watch(self) -> None:
        assert self._pipe is not None
        r = self._pipe[0]
        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data or _STOP in data:
                return
            if signal.SIGINT.to_bytes(1, "little") in data:
                self.fired = True
                try:
                    self._stop()
                except Exception:
                    pass

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pipe is None:
            return
        r, w = self._pipe
        signal.set_wakeup_fd(self._old_wakeup)
        signal.signal(signal.SIGINT, self._old_handler)
        try:
            os.write(w, _STOP)
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(w)
        os.close(r)
        self._pipe = None
