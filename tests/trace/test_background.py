"""The trace writer process: the same bytes as writing inline, and failures reported.

:class:`FaultTracer` hands its records to a child process by default. These
tests run the same guests with the writer in the child and inline and
compare the files byte for byte (across several batches and chunk
boundaries), and check that a child that fails, or a writer dropped without
``close()``, ends the way the module promises.
"""
from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmuemu.config import RunConfig
from mmuemu.emu.machine import Machine
from mmuemu.emu.tracing import BACKGROUND_BATCH_EVENTS, FaultTracer
from mmuemu.trace import read_all
from mmuemu.trace.background import BackgroundWriter, TraceWriterError
from mmuemu.trace.container import CHUNK_EVENTS
from tests.conftest import ARCHES
from tests.trace.harness import guest_path

#: more events than a chunk and than several batches, so both boundaries are crossed
PAGES = CHUNK_EVENTS + BACKGROUND_BATCH_EVENTS + 300


def _traced_run(arch: str, program: str, args: list[str], out: Path, root: Path,
                background: bool) -> FaultTracer:
    with FaultTracer(out, argv=args, background=background) as tracer:
        m = Machine(guest_path(arch, program), args, rconfig=RunConfig(root=str(root)),
                    tracer=tracer)
        m.run()
    return tracer


@pytest.mark.parametrize("suffix", [".mmtrace", ".jsonl"])
@pytest.mark.parametrize("arch", ARCHES)
def test_the_writer_process_writes_the_bytes_of_an_inline_writer(
        tmp_path: Path, arch: str, suffix: str) -> None:
    args = [str(PAGES)]
    bg, inline = tmp_path / f"bg{suffix}", tmp_path / f"inline{suffix}"
    t_bg = _traced_run(arch, "anon_touch", args, bg, tmp_path, background=True)
    t_in = _traced_run(arch, "anon_touch", args, inline, tmp_path, background=False)
    assert bg.read_bytes() == inline.read_bytes()
    _, events = read_all(bg)
    # every page of the array faults once, plus exec's and the program's own
    assert sum(e.kind == "fault.anon" for e in events) >= PAGES
    assert t_bg.stats()["writer"] == "process" and t_in.stats()["writer"] == "inline"
    assert t_bg.stats()["events"] == t_in.stats()["events"] == len(events)
    assert t_bg.stats()["cpu_seconds"] > 0


@pytest.mark.parametrize("arch", ARCHES)
def test_records_are_handed_over_before_each_exit(tmp_path: Path, arch: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine sends the waiting records before a task's teardown, so the
    writer process derives them during exit_mmap; with two exits (fork) the
    file is still the inline writer's, byte for byte."""
    import mmuemu.emu.machine as machine_module

    args = ["64"]
    waiting_at_exit: list[int] = []
    tracers: list[FaultTracer] = []
    real_do_exit = machine_module.do_exit

    def do_exit(task: Any, code: int, signal: int = 0) -> None:
        waiting_at_exit.append(len(tracers[-1]._pending))
        real_do_exit(task, code, signal)

    monkeypatch.setattr(machine_module, "do_exit", do_exit)
    out = {}
    for background in (True, False):
        out[background] = tmp_path / f"{background}.mmtrace"
        with FaultTracer(out[background], argv=args, background=background) as tracer:
            tracers.append(tracer)
            Machine(guest_path(arch, "cow_fork"), args, rconfig=RunConfig(root=str(tmp_path)),
                    tracer=tracer).run()
    # the child's exit and the parent's: nothing waiting with the writer process,
    # a partial chunk waiting inline
    assert len(waiting_at_exit) == 4
    assert waiting_at_exit[:2] == [0, 0] and all(n > 0 for n in waiting_at_exit[2:])
    assert out[True].read_bytes() == out[False].read_bytes()


class _RecordingSink:
    """Writes what happens to it to a file, one word per line."""

    def __init__(self, setup: Any) -> None:
        self.path, self.fail_on = setup
        self.n = 0
        self._note("start")

    def _note(self, word: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(word + "\n")

    def consume(self, batch: list[Any]) -> None:
        if batch == self.fail_on:
            raise ValueError(f"cannot take {batch!r}")
        self.n += len(batch)
        self._note(f"batch {len(batch)}")

    def finish(self) -> dict[str, Any]:
        self._note("finish")
        return {"events": self.n}

    def abandon(self) -> None:
        self._note("abandon")


def test_batches_arrive_in_order_and_finish_reports(tmp_path: Path) -> None:
    log = tmp_path / "log"
    w = BackgroundWriter(_RecordingSink)
    w.start((str(log), None))
    for n in (1, 5, 3):
        w.send(list(range(n)))
    info = w.close()
    assert info["events"] == 9 and info["cpu_seconds"] >= 0
    assert log.read_text().split("\n") == ["start", "batch 1", "batch 5", "batch 3", "finish",
                                           ""]
    assert w.close() == info  # idempotent


def test_a_sent_batch_is_in_the_pipe_when_send_returns(tmp_path: Path) -> None:
    """send() writes its frame through, not into a buffer that waits for the
    next one: the batch the machine hands over before a task's exit reaches
    the child while the address space is torn down. The child's sink notes
    each batch as it takes it, so the note appears while the writer waits."""
    import time
    log = tmp_path / "log"
    w = BackgroundWriter(_RecordingSink)
    w.start((str(log), None))
    w.send([1, 2])  # a small frame, far below any buffer
    deadline = time.monotonic() + 30
    while "batch 2" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the batch did not reach the child"
        time.sleep(0.01)
    w.close()


def test_a_frame_survives_partial_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blocking pipe write returns short when a signal interrupts it; the
    frame's rest follows, in order, so the child reads the same stream."""
    import os
    from mmuemu.trace import background
    real = os.writev
    calls: list[int] = []

    def short_writev(fd: int, buffers: list[Any]) -> int:
        data = b"".join(bytes(b) for b in buffers)[:7]  # at most 7 bytes a call
        calls.append(len(data))
        return real(fd, [data])

    monkeypatch.setattr(background.os, "writev", short_writev)
    log = tmp_path / "log"
    w = BackgroundWriter(_RecordingSink)
    w.start((str(log), None))
    w.send(list(range(50)))
    w.send(list(range(3)))
    info = w.close()
    assert info["events"] == 53 and len(calls) > 10
    assert log.read_text().split("\n") == ["start", "batch 50", "batch 3", "finish", ""]


def test_the_reader_splits_frames_however_the_pipe_delivers_them() -> None:
    """The child's reader takes all the pipe holds at once: several frames in
    one read, a frame cut across reads, and the end marker, in order."""
    import os
    import queue
    import threading
    from mmuemu.trace.background import _read_frames

    payloads = [b"a" * 10, b"b", b"c" * 70_000, b"d" * 3]
    stream = b"".join(len(p).to_bytes(4, "little") + p for p in payloads) + bytes(4)
    r, w = os.pipe()
    frames: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    reader = threading.Thread(target=_read_frames, args=(r, frames))
    reader.start()
    try:
        for cut in (3, 14, 16, 5000, 70_020, len(stream)):  # odd places, mid-length too
            part, stream = stream[:cut], stream[cut:]
            os.write(w, part)
    finally:
        os.close(w)
        reader.join(30)
        os.close(r)
    got = [frames.get_nowait() for _ in range(frames.qsize())]
    assert got == [*payloads, b""]


def test_the_reader_reports_a_stream_cut_short() -> None:
    """Without the end marker (the emulator died) the reader ends with None."""
    import os
    import queue
    from mmuemu.trace.background import _read_frames

    r, w = os.pipe()
    os.write(w, (5).to_bytes(4, "little") + b"xy")  # three bytes of the payload missing
    os.close(w)
    frames: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    _read_frames(r, frames)
    os.close(r)
    assert frames.get_nowait() is None and frames.empty()


class _SchedulingSink:
    """Reports how the child's threads are scheduled: (policy, nice) of each."""

    def __init__(self, setup: Any) -> None:
        pass

    def consume(self, batch: list[Any]) -> None:
        pass

    def finish(self) -> dict[str, Any]:
        import os
        threads = []
        for tid in sorted(os.listdir("/proc/self/task")):
            # /proc/<pid>/task/<tid>/stat: fields 19 (nice) and 41 (policy),
            # counted after the ")" that ends the command name
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            threads.append((int(fields[38]), int(fields[16])))
        return {"events": 0, "threads": threads}

    def abandon(self) -> None:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE and /proc: Linux")
def test_the_writer_process_runs_only_where_the_emulator_leaves_a_cpu_idle(
        tmp_path: Path) -> None:
    """The child and its reader thread are SCHED_IDLE, the emulator is not:
    at normal priority the child preempted the emulator (bench/README.md)."""
    import os
    w = BackgroundWriter(_SchedulingSink)
    w.start(None)
    w.send([1])
    threads = w.close()["threads"]
    assert len(threads) == 2  # the main thread and the reader thread
    assert all(policy == os.SCHED_IDLE for policy, _ in threads), threads
    assert os.sched_getscheduler(0) != os.SCHED_IDLE


def test_a_failing_sink_is_one_line_at_close(tmp_path: Path) -> None:
    log = tmp_path / "log"
    w = BackgroundWriter(_RecordingSink)
    w.start((str(log), ["bad"]))
    w.send([1])
    w.send(["bad"])
    for _ in range(50):  # the child has gone: sending must not raise
        w.send([2] * 10000)
    with pytest.raises(TraceWriterError) as e:
        w.close()
    assert "cannot take ['bad']" in str(e.value) and "\n" not in str(e.value)
    assert log.read_text().split()[-1] == "abandon"


def test_a_writer_dropped_without_close_abandons_its_output(tmp_path: Path) -> None:
    log = tmp_path / "log"
    w = BackgroundWriter(_RecordingSink)
    w.start((str(log), None))
    w.send([1, 2])
    del w
    gc.collect()  # the finalizer closes the pipe and waits for the child
    assert log.read_text().split("\n") == ["start", "batch 2", "abandon", ""]


def test_a_trace_the_writer_process_cannot_open_fails_at_close(tmp_path: Path) -> None:
    where = tmp_path / "gone"
    where.mkdir()
    tracer = FaultTracer(where / "t.mmtrace", argv=["1"], background=True)
    shutil.rmtree(where)  # the child opens the file only when the run starts
    Machine(guest_path("x86_64", "anon_touch"), ["1"], rconfig=RunConfig(root=str(tmp_path)),
            tracer=tracer).run()
    with pytest.raises(TraceWriterError) as e:
        tracer.close()
    assert "No such file or directory" in str(e.value)


def test_the_cli_reports_the_writer(tmp_path: Path) -> None:
    stats = {}
    for writer in ("process", "inline"):
        out, st = tmp_path / f"{writer}.jsonl", tmp_path / f"{writer}.json"
        r = subprocess.run([sys.executable, "-m", "mmuemu", "run", "-q", "--trace", str(out),
                            "--trace-writer", writer, "--stats", str(st),
                            guest_path("aarch64", "anon_touch"), "40"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert r.returncode == 0, r.stderr
        stats[writer] = json.loads(st.read_text())["trace"]
        assert stats[writer]["writer"] == writer
    assert stats["process"]["events"] == stats["inline"]["events"] > 40
    assert (tmp_path / "process.jsonl").read_bytes() == (tmp_path / "inline.jsonl").read_bytes()


def test_the_writer_gets_the_pte_formats_class_not_the_machines_object(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pickling an object reads its __dict__, and Python 3.11 then stops
    specializing reads of its attributes: the fault path reads the PTE
    format's masks on every fault, so the machine's format object must not
    be what is pickled for the writer process."""
    sent: list[Any] = []
    real_start = BackgroundWriter.start

    def start(self: BackgroundWriter, setup: Any) -> None:
        sent.append(setup)
        real_start(self, setup)

    monkeypatch.setattr(BackgroundWriter, "start", start)
    with FaultTracer(tmp_path / "t.mmtrace", argv=["8"], background=True) as tracer:
        m = Machine(guest_path("x86_64", "anon_touch"), ["8"],
                    rconfig=RunConfig(root=str(tmp_path)), tracer=tracer)
        m.run()
    (setup,) = sent
    assert not any(item is m.kern.fmt for item in setup)
    assert type(m.kern.fmt) in setup
