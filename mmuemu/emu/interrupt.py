"""Ctrl-C during emulation: stop Unicorn from a native watcher thread.

Python runs a signal handler only between bytecodes of the main thread. A
guest whose loop never calls back into Python (every translation served
by the native fill, no syscalls) keeps the main thread inside
``uc_emu_start`` for as long as it likes, so SIGINT would wait for the
guest. And the machine runs ``uc_emu_start`` holding the GIL
(:func:`~mmuemu.emu.native.emu_start_holding_gil`), so no Python thread
could act meanwhile either.

:class:`InterruptWatcher` installs a SIGINT handler that only records the
signal, and points Python's wakeup fd at a pipe that a native thread reads
(``_native/sigint_watch.c``): Python's C-level handler writes the signal
number there at once, and the thread calls ``uc_emu_stop`` and marks the
watcher :attr:`~InterruptWatcher.fired`. The run loop then sees it and
ends the run as interrupted, so the trace and the stats are still written.
Outside the main thread (where signals cannot be handled) it does nothing.
"""
from __future__ import annotations

import ctypes
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Optional

from unicorn.unicorn_py3.unicorn import uclib

from mmuemu.emu.native import UcLike, _func_addr, load_library, uc_handle

#: the byte that ends the watcher thread (MMUEMU_WATCH_END)
_END = b"\xff"


class SigintWatch(ctypes.Structure):
    """Mirror of ``struct mmuemu_sigint_watch`` (``_native/sigint_watch.c``)."""

    _fields_ = [
        ("fd", ctypes.c_int32),
        ("fired", ctypes.c_int32),
        ("uc", ctypes.c_void_p),
        ("emu_stop", ctypes.c_void_p),
        ("thread", ctypes.c_ulong),  # pthread_t
    ]


def _watch_functions() -> tuple[Any, Any]:
    """(start, join) of the native watcher, prototypes set, layout checked."""
    lib = load_library()
    lib.mmuemu_sigint_watch_size.restype = ctypes.c_uint32
    lib.mmuemu_sigint_watch_size.argtypes = []
    if lib.mmuemu_sigint_watch_size() != ctypes.sizeof(SigintWatch):
        raise ImportError("mmuemu.emu._fastpath: struct mmuemu_sigint_watch is "
                          f"{lib.mmuemu_sigint_watch_size()} bytes, the ctypes mirror "
                          f"{ctypes.sizeof(SigintWatch)}")
    for name in ("mmuemu_sigint_watch_start", "mmuemu_sigint_watch_join"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.POINTER(SigintWatch)]
    return lib.mmuemu_sigint_watch_start, lib.mmuemu_sigint_watch_join


class InterruptWatcher:
    """While active, SIGINT calls ``uc_emu_stop`` on ``uc`` and sets :attr:`fired`."""

    def __init__(self, uc: UcLike) -> None:
        self._uc = uc
        self._python_fired = False
        self._old_handler: Any = None
        self._old_wakeup = -1
        self._pipe: Optional[tuple[int, int]] = None
        self._watch: Optional[SigintWatch] = None
        self._join: Any = None

    @property
    def fired(self) -> bool:
        """A SIGINT arrived while active (seen by the native thread or by Python's handler)."""
        return self._python_fired or (self._watch is not None and bool(self._watch.fired))

    def __enter__(self) -> "InterruptWatcher":
        if threading.current_thread() is not threading.main_thread():
            return self
        start, join = _watch_functions()
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
        watch = SigintWatch(fd=r, fired=0, uc=uc_handle(self._uc).value,
                            emu_stop=_func_addr(uclib.uc_emu_stop))
        err = start(ctypes.byref(watch))
        if err:
            self._restore()
            raise OSError(err, f"cannot start the Ctrl-C watcher thread: {os.strerror(err)}")
        self._watch, self._join = watch, join
        return self

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        self._python_fired = True

    def _restore(self) -> None:
        """Put the signal handling back and close the pipe."""
        assert self._pipe is not None
        r, w = self._pipe
        signal.set_wakeup_fd(self._old_wakeup)
        signal.signal(signal.SIGINT, self._old_handler)
        os.close(w)
        os.close(r)
        self._pipe = None

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pipe is None:
            return
        if self._watch is not None:
            try:
                os.write(self._pipe[1], _END)
            except OSError:
                pass
            self._join(ctypes.byref(self._watch))
        self._restore()
