# Type stub of the C extension mmuemu/emu/_native/tracerec.c (the trace's recorders).
from typing import Any, Callable

RECORD_SIZE: int
MEMO_WAYS: int
VMA_MEMO_LEN: int
WORDS_SIZE: int
INSN_PAGE_BITS: int

def slot_layout(vmf_type: type, task_type: type, mm_type: type, vma_type: type,
                tree_type: type) -> Any: ...
def fault_recorder(ctx: tuple[Any, ...]) -> Callable[..., None]: ...
def flush_recorder(ctx: tuple[Any, ...]) -> Callable[..., None]: ...
