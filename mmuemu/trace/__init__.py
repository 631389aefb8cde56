"""Fault traces: the event schema, streaming writers, one reader, diff, stats and plots.

Layering: this package knows nothing of Unicorn or the kernel model; the
emulator's sink (:mod:`mmuemu.emu.tracing`) builds :class:`TraceEvent`
values and hands them to a writer from :func:`open_writer`. The names below
are imported on first use, so ``import mmuemu.trace.cli`` (done by the
``mmuemu`` command line) stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ALL_EVENTS": "schema", "KINDS": "schema", "SCHEMA_VERSION": "schema",
    "EventFilter": "schema", "EventFilterError": "schema", "TraceEvent": "schema",
    "TraceHeader": "schema", "TraceFormatError": "reader", "open_trace": "reader",
    "read_all": "reader", "open_writer": "writer", "trace_encoding": "writer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmuemu.trace' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mmuemu.trace.{module}"), name)
