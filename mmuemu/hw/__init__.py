"""The MMU hardware model: physical memory, page-table formats, the walker.

This package is "silicon": it knows PTE bits and table layouts, never VMAs,
and never imports :mod:`mmuemu.kernel`.
"""
