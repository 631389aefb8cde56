"""Fault traces: the event schema, streaming writers, one reader, diff, stats and plots.

Layering: this package knows nothing of Unicorn or the kernel model; the
emulator's sink (:mod:`mmuemu.emu.tracing`) builds :class:`TraceEvent`
values and hands them to a writer from :func:`open_writer`.
"""
from mmuemu.trace.reader import TraceFormatError, open_trace, read_all
from mmuemu.trace.schema import (
    ALL_EVENTS, KINDS, SCHEMA_VERSION, EventFilter, EventFilterError, TraceEvent, TraceHeader,
)
from mmuemu.trace.writer import open_writer, trace_encoding

__all__ = [
    "ALL_EVENTS", "KINDS", "SCHEMA_VERSION", "EventFilter", "EventFilterError", "TraceEvent",
    "TraceFormatError", "TraceHeader", "open_trace", "open_writer", "read_all",
    "trace_encoding",
]
