"""Write a trace in a child process, next to the emulator instead of inside it.

Tracing a fault-heavy run is mostly formatting: naming kinds, placing
addresses, building columns, compressing. None of it changes what the run
does, so :class:`BackgroundWriter` starts a child at the start of the run and
does it there, on the machine's other core, while the emulator goes on.
The child is SCHED_IDLE: it never takes a CPU the emulator could run on.

The child is a fresh interpreter (``posix_spawn``), not a fork: after a
fork every page the two processes share costs the emulator a copy-on-write
fault when it writes there (the interpreter's heap, touched by reference
counts), and on this machine those cost tens of microseconds each, about
a tenth of a fault-heavy run. The child imports what its sink needs while
a reader thread already takes the emulator's batches off the pipe, so the
emulator does not wait for it. The first frame (:meth:`BackgroundWriter.start`,
pickled) carries the sink factory, by reference, and its setup: the trace
file is opened, written and closed only by the child. After that the
emulator's side is one ``marshal.dumps`` and one pipe write per batch of
records (about a quarter of a microsecond per event).

The batches arrive in the order they were sent and the sink sees exactly
what an in-process sink would: the bytes of the trace do not depend on
where it was written. At :meth:`BackgroundWriter.close` the emulator waits
for the child to finish the last batch and reports the child's own CPU time.
If the emulator dies, the child sees the pipe close without the final
marker and calls :meth:`Sink.abandon` (a binary trace then has no end
record, which the readers report as a truncated trace). The child ignores
SIGINT, so an interrupted run still gets its trace finished by
:meth:`~BackgroundWriter.close`.
"""
from __future__ import annotations

import importlib
import marshal
import os
import pickle
import queue
import signal
import sys
import threading
import time
import weakref
from typing import Any, Callable, Optional, Protocol

#: Each frame: a 4-byte little-endian length, then that many bytes of marshal data.
#: A zero length ends the stream.
_LEN_BYTES = 4
_MAX_FRAME = (1 << 32) - 1
#: Pipe capacity asked for (Linux F_SETPIPE_SZ): the emulator rarely waits on a full pipe.
_PIPE_BYTES = 1 << 20


class TraceWriterError(Exception):
    """The child writing the trace failed; the message says why, in one line."""


class Sink(Protocol):
    """What the child feeds: built in the child, from the first frame."""

    def consume(self, batch: Any) -> None:
        """One batch, as the emulator sent it."""

    def finish(self) -> dict[str, Any]:
        """The stream ended normally: complete the output; what to report back."""

    def abandon(self) -> None:
        """The emulator went away mid-stream: keep what is written, add nothing."""


def supported() -> bool:
    """True where a background writer can run (the platform has posix_spawn)."""
    return hasattr(os, "posix_spawn")


#: what the child runs: _child_main(data fd, result fd, the sink factory's module).
#: Its first statements give up the CPU to the emulator, before any import:
#: SCHED_IDLE where Linux has it, else nice 19, for this process and the
#: reader thread it starts later. At normal priority the child's two threads
#: and the emulator were three runnable threads on this 2-core machine and the
#: emulator was preempted: 53-73 involuntary context switches in a traced
#: ``anon_touch 20000`` on arm64 and 40-60 ms of its ~200 ms run off the CPU;
#: with SCHED_IDLE, 2-6 and a few ms. The child still finishes: when the
#: emulator waits for it, at close() or on a full pipe, its CPU is idle.
#: (posix_spawn's ``scheduler`` cannot ask for SCHED_IDLE: glibc returns EINVAL.)
_BOOT = ("import os, sys\n"
         "try:\n"
         "    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
         "except (AttributeError, OSError):\n"
         "    try:\n"
         "        os.nice(19)\n"
         "    except OSError:\n"
         "        pass\n"
         "from mmuemu.trace.background import _child_main\n"
         "_child_main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])\n")


def _write_all(fd: int, parts: list[bytes]) -> None:
    """Write ``parts`` to ``fd`` in order, in as few ``writev`` calls as the
    pipe takes (a blocking pipe takes all but when a signal interrupts it)."""
    views = [memoryview(p) for p in parts if p]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


def _child_env() -> dict[str, str]:
    """The emulator's environment, with its module search path: the child
    must import the same mmuemu (and the sink factory's module)."""
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class _ChildState:
    """What the finalizer needs to end and reap the child (no reference to the writer)."""

    __slots__ = ("pid", "data", "reaped")

    def __init__(self, pid: int, data: Any) -> None:
        self.pid = pid
        self.data: Optional[Any] = data
        self.reaped = False


class BackgroundWriter:
    """Starts a child at once; :meth:`start` tells it how to build its sink.

    ``make_sink(setup)`` runs in the child with what :meth:`start` sent; it
    must be picklable by reference (a module-level function or class).
    Raises OSError if the pipes or the child cannot be made.
    """

    def __init__(self, make_sink: Callable[[Any], Sink]) -> None:
        self._make_sink = make_sink
        data_r, data_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            import fcntl
            fcntl.fcntl(data_w, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)  # type: ignore[attr-defined]
        except (ImportError, AttributeError, OSError):
            pass  # the default pipe size only makes the emulator wait more often
        try:
            # the child's two ends are inherited; the others are close-on-exec
            os.set_inheritable(data_r, True)
            os.set_inheritable(result_w, True)
            pid = os.posix_spawn(sys.executable,
                                 [sys.executable, "-c", _BOOT, str(data_r), str(result_w),
                                  getattr(make_sink, "__module__", None) or ""],
                                 _child_env())
        except BaseException:
            for fd in (data_w, result_r):
                os.close(fd)
            raise
        finally:
            os.close(data_r)
            os.close(result_w)
        self.pid = pid
        self._data: Optional[Any] = os.fdopen(data_w, "wb", buffering=1 << 16)
        self._result_fd = result_r
        self._state = _ChildState(pid, self._data)
        # a writer dropped without close(): the child sees the pipe close, abandons
        # its output and exits; either way it is reaped when the writer goes
        weakref.finalize(self, _shutdown, self._state)
        self._started = False
        #: why sending stopped (the child went away), or None
        self._broken: Optional[str] = None
        #: what the child reported at the end (see close())
        self.info: dict[str, Any] = {}

    def start(self, setup: Any) -> None:
        """Send the child its setup (any picklable value; once, before :meth:`send`)."""
        if self._started:
            raise ValueError("the background writer was started already")
        self._started = True
        self._frame(pickle.dumps((self._make_sink, setup), protocol=pickle.HIGHEST_PROTOCOL))
        # now, not with the first full buffer: the child builds its sink (opens
        # the file, imports the PTE format) during the run, not at close()
        self._flush()

    def _flush(self) -> None:
        if self._data is None or self._broken is not None:
            return
        try:
            self._data.flush()
        except BrokenPipeError:
            self._broken = "the trace writer process exited early"

    def send(self, batch: Any) -> None:
        """Hand ``batch`` (ints, floats, strings, None, bools, bytes-like objects,
        and tuples and lists of those; a bytes-like object arrives as bytes)
        over, at once: the frame is written before this returns."""
        if not self._started:
            raise ValueError("send() before start()")
        self._frame(marshal.dumps(batch), now=True)

    def _frame(self, payload: bytes, now: bool = False) -> None:
        """One frame: buffered, or (``now``) written through with its length in
        one system call (one wake-up of the child's reader, where a buffered
        length and a payload past the buffer were two writes and two)."""
        if self._data is None or self._broken is not None:
            return
        if not 0 < len(payload) <= _MAX_FRAME:
            raise ValueError("trace batch too large for one frame")
        header = len(payload).to_bytes(_LEN_BYTES, "little")
        try:
            if not now:
                self._data.write(header)
                self._data.write(payload)
                return
            self._data.flush()  # what is buffered goes first
            _write_all(self._data.fileno(), [header, payload])
        except BrokenPipeError:
            self._broken = "the trace writer process exited early"

    def close(self) -> dict[str, Any]:
        """End the stream, wait for the child's report, and return it.

        Raises TraceWriterError if the child failed (the message is the child's).
        Idempotent: later calls return the same report.
        """
        if self._data is None:
            return self.info
        try:
            self._data.write(b"\0" * _LEN_BYTES)
            self._data.flush()
        except BrokenPipeError:
            self._broken = self._broken or "the trace writer process exited early"
        finally:
            try:
                self._data.close()
            except BrokenPipeError:
                pass
            self._data = self._state.data = None
        # the report is framed, so it is read without waiting for the child to
        # exit (tearing down a process's address space takes a few ms)
        with os.fdopen(self._result_fd, "rb") as fh:
            head = fh.read(_LEN_BYTES)
            raw = fh.read(int.from_bytes(head, "little")) if len(head) == _LEN_BYTES else b""
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid != 0:  # else still exiting: reaped when this writer goes
            self._state.reaped = True
        try:
            report = marshal.loads(raw) if raw else None
        except (EOFError, ValueError, TypeError):
            report = None
        if isinstance(report, tuple) and len(report) == 2 and report[0] == "ok":
            self.info = dict(report[1])
            if self._broken is None:
                return self.info
        if isinstance(report, tuple) and len(report) == 2 and report[0] == "error":
            raise TraceWriterError(str(report[1]))
        if self._broken is not None:
            raise TraceWriterError(self._broken)
        raise TraceWriterError(f"the trace writer process ended with status {status:#x} "
                               "and no report")


def _shutdown(state: _ChildState) -> None:
    """Close the pipe (if close() did not) and reap the child."""
    if state.data is not None:
        try:
            state.data.close()
        except OSError:
            pass
        state.data = None
    if not state.reaped:
        state.reaped = True
        try:
            os.waitpid(state.pid, 0)
        except ChildProcessError:
            pass


def _read_frames(data_fd: int, frames: "queue.SimpleQueue[Optional[bytes]]") -> None:
    """The child's reader thread: frames off the pipe as they come (the end
    marker as b"", a broken stream as None), so the emulator never waits on
    a full pipe while the child is still importing.

    While the main thread imports it holds the GIL, and this thread gets it
    once a switch interval (5 ms), about as often as the emulator sends a
    batch. So each turn takes all the pipe holds, in one read of up to the
    pipe's size, and splits the frames out without another system call (a
    read of the length and then of the payload, each a wait for the GIL,
    fell behind and the emulator waited on a full pipe for tens of ms)."""
    try:
        buf = bytearray()
        while True:
            chunk = os.read(data_fd, _PIPE_BYTES)
            if not chunk:
                frames.put(None)
                return
            buf += chunk
            pos = 0
            with memoryview(buf) as view:
                while len(buf) - pos >= _LEN_BYTES:
                    n = int.from_bytes(view[pos:pos + _LEN_BYTES], "little")
                    if n == 0:
                        frames.put(b"")
                        return
                    if len(buf) - pos - _LEN_BYTES < n:
                        break
                    frames.put(bytes(view[pos + _LEN_BYTES:pos + _LEN_BYTES + n]))
                    pos += _LEN_BYTES + n
            del buf[:pos]
    except BaseException:
        frames.put(None)


def _child_main(data_fd: int, result_fd: int, factory_module: str = "") -> None:
    """The child's whole life: import the sink factory's module (while the
    emulator starts up: the first frame comes when its machine is built),
    build the sink from the first frame, feed it the rest until the end
    marker, report, exit."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        report: tuple[str, Any]
        sink: Optional[Sink] = None
        frames: "queue.SimpleQueue[Optional[bytes]]" = queue.SimpleQueue()
        threading.Thread(target=_read_frames, args=(data_fd, frames), daemon=True).start()
        try:
            if factory_module:
                importlib.import_module(factory_module)
            while True:
                payload = frames.get()
                if payload == b"":
                    info: dict[str, Any] = sink.finish() if sink is not None else {"events": 0}
                    info["cpu_seconds"] = round(time.process_time(), 6)
                    report, code = ("ok", info), 0
                    break
                if payload is None:
                    _abandon_quietly(sink)
                    report = ("error", "the emulator stopped before the trace was complete")
                    break
                if sink is None:  # the first frame: the factory and its setup
                    make_sink, setup = pickle.loads(payload)
                    sink = make_sink(setup)
                else:
                    sink.consume(marshal.loads(payload))
        except OSError as e:
            report = ("error", f"{e.filename + ': ' if e.filename else ''}"
                               f"{e.strerror or e}")
            _abandon_quietly(sink)
        except Exception as e:  # reported to the emulator, which prints one line
            report = ("error", f"trace writer: {type(e).__name__}: {e}")
            _abandon_quietly(sink)
        data = marshal.dumps(report)
        view = memoryview(len(data).to_bytes(_LEN_BYTES, "little") + data)
        while view:
            view = view[os.write(result_fd, view):]
    finally:
        os._exit(code)


def _abandon_quietly(sink: Optional[Sink]) -> None:
    if sink is not None:
        try:
            sink.abandon()
        except Exception:
            pass
