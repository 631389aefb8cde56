/*
 * tracerec.c - the fault tracer's record steps in C (mmuemu.emu._tracerec).
 *
 * FaultTracer.fault and FaultTracer.tlb_flush (mmuemu/emu/tracing.py) run
 * once per page fault and per COW flush; in Python each costs about a tenth
 * of the fault it records. These are the same steps for the common case and
 * append the same packed record (mmuemu/trace/derive.py: RECORD, 80 bytes,
 * little-endian) to the same bytearray, numbering strings and placements in
 * the same Interner (its dict and its list of new objects).
 *
 * record_fault covers a fault the handler named, whose PTE address the
 * handler left, on a VMA whose placement is remembered, at a pc the native
 * fill hook published (mmuemu_tlb_fill_faulting: state fields fault_vaddr /
 * fault_pc) with its instruction in the disassembly cache. record_flush
 * covers a page or range flush of the running task's mm starting in its
 * cached VMA (mmap_cache) with no cached instruction in the range. Anything
 * else is handed to the Python method unchanged, before anything was
 * appended, so the records, and the trace, are the same either way.
 *
 * record_fault(ctx, task, address, access, vmf, vma, major, signal, user) and
 * record_flush(ctx, mm, kind, start, end), with ctx the tuples FaultTracer
 * makes (CTX_* and FL_* below); fault_recorder / flush_recorder bind them to
 * their ctx, and the tracer sets the results as its `fault` and `tlb_flush`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* T_OBJECT_EX: a __slots__ member */
#include <stdint.h>
#include <string.h>

enum {
    CTX_PENDING,     /* bytearray: the packed records */
    CTX_VMAS,        /* dict: VMA -> (snapshot tuple, placement) */
    CTX_DISASM,      /* dict: (context_id, pc) -> instruction text */
    CTX_WORDS,       /* bytes: a struct ctx_words (the addresses and sizes below) */
    CTX_SLOW,        /* callable: the Python FaultTracer.fault (same arguments) */
    CTX_DRAIN,       /* callable: FaultTracer._drain() */
    CTX_IDS,         /* dict: object -> number (Interner.ids) */
    CTX_NEW,         /* list: objects numbered since the last batch (Interner.new) */
    CTX_LAYOUT,      /* (bytes, classes): slot_layout(*classes), the kernel's classes */
    CTX_IDS_MEMO,    /* list: ID_MEMO_LEN items, see intern_memo() */
    CTX_INSN_MEMO,   /* list: MEMO_WAYS entries [context_id, pc, instruction text] of recent
                      * records; the tracer sets each entry's context id to None whenever
                      * it drops cached instructions */
    CTX_KIND_MEMO,   /* list: MEMO_WAYS entries [a recent vmf.kind, its _value_] (enum
                      * members are singletons: the same object has the same value, and
                      * getattr on one is a generic attribute lookup, type and instance
                      * dict) */
    CTX_VMA_MEMO,    /* list: VMA_MEMO_LEN items, see placement(); the tracer sets item 0
                      * to None when it forgets its placements */
    CTX_N
};

enum {
    FL_PENDING,      /* as CTX_PENDING */
    FL_VMAS,         /* as CTX_VMAS */
    FL_DISASM,       /* as CTX_DISASM */
    FL_WORDS,        /* as CTX_WORDS (insns_at and batch are read) */
    FL_SLOW,         /* callable: the Python FaultTracer.tlb_flush */
    FL_DRAIN,        /* as CTX_DRAIN */
    FL_KERNEL,       /* the Kernel: its `current` is the running task */
    FL_IDS,          /* as CTX_IDS */
    FL_NEW,          /* as CTX_NEW */
    FL_PAGE,         /* str: "page", the kind the kernel passes */
    FL_RANGE,        /* str: "range" */
    FL_PAGE_NAME,    /* str: "flush.tlb_page", the event's kind */
    FL_RANGE_NAME,   /* str: "flush.tlb_range" */
    FL_LAYOUT,       /* as CTX_LAYOUT */
    FL_IDS_MEMO,     /* as CTX_IDS_MEMO (a list of its own) */
    FL_VMA_MEMO,     /* as CTX_VMA_MEMO (the same list) */
    FL_INSN_PAGES,   /* bytearray: a bitmap of the pages (pc >> 12) of the instructions in
                      * the disassembly cache, of any address space (INSN_PAGE_BITS
                      * bits; more set than needed is harmless) */
    FL_N
};

/*
 * The numbers a record reads, packed once when the tracer attaches
 * (struct.pack("=6Q", ...), WORDS_SIZE bytes) and copied out in one go,
 * instead of six ints converted on every record.
 */
struct ctx_words {
    uint64_t insns_at;       /* address of the native state's insns (uint64) */
    uint64_t fault_vaddr_at; /* address of fault_vaddr (uint64); 0 in a flush ctx */
    uint64_t fault_pc_at;    /* address of fault_pc (uint64); 0 in a flush ctx */
    uint64_t phys;           /* host address of guest physical memory; 0 in a flush ctx */
    uint64_t phys_size;      /* its size in bytes */
    uint64_t batch;          /* drain when the bytearray holds this many bytes */
};

/*
 * The attributes the records read, each at a fixed place in the layout
 * slot_layout() builds. For the class slot_layout() was given, an
 * attribute that is a __slots__ member is read straight from the object
 * (its offset), instead of through getattr's type lookup, which was half of
 * a record's cost. Any other object, or an attribute that is not a plain
 * member, goes through getattr as before.
 */
enum {
    A_VMF_KIND, A_VMF_DETAIL, A_VMF_PTE_PA,                 /* VmFault */
    A_TASK_MM, A_TASK_PID,                                  /* TaskStruct */
    A_MM_CONTEXT_ID, A_MM_START_BRK, A_MM_END_DATA, A_MM_RB, /* MmStruct */
    A_VM_START, A_VM_END, A_VM_FLAGS, A_VM_OPS, A_VM_FILE, A_VM_PRIVATE_DATA, /* VmAreaStruct */
    A_MMAP_CACHE,                                           /* the mm_rb object */
    A_N
};

struct slot_ref {
    PyTypeObject *type; /* borrowed: ctx holds the types */
    Py_ssize_t offset;  /* -1: not a member of type; use getattr */
};

#define NARGS 8 /* task, address, access, vmf, vma, major, signal, user */

/* derive.py: RECORD = struct.Struct("<BBBxIQQQQqQIIIIII") */
#define RECORD_SIZE 80
#define TAG_FAULT 0
#define TAG_OTHER 1
#define F_USER 1
#define F_MAJOR 2
#define F_PC 4
#define F_PTE 8
#define F_NAMED 16
#define F_PLACED 32

struct record {
    uint8_t tag, flags, signal;
    uint32_t pid;
    uint64_t insns, addr, a, b;
    int64_t c;
    uint64_t d;
    PyObject *objs[5]; /* numbered: kind, detail/outcome, access/role, insn, placement */
    uint32_t prot;
};

/* interned strings, set once at import: the attribute names (A_*) and a few more */
static PyObject *s_attr[A_N];
static PyObject *s_value, *s_current, *s_empty;
static const char *const attr_names[A_N] = {
    [A_VMF_KIND] = "kind", [A_VMF_DETAIL] = "detail", [A_VMF_PTE_PA] = "pte_pa",
    [A_TASK_MM] = "mm", [A_TASK_PID] = "pid",
    [A_MM_CONTEXT_ID] = "context_id", [A_MM_START_BRK] = "start_brk",
    [A_MM_END_DATA] = "end_data", [A_MM_RB] = "mm_rb",
    [A_VM_START] = "vm_start", [A_VM_END] = "vm_end", [A_VM_FLAGS] = "vm_flags",
    [A_VM_OPS] = "vm_ops", [A_VM_FILE] = "vm_file", [A_VM_PRIVATE_DATA] = "vm_private_data",
    [A_MMAP_CACHE] = "mmap_cache",
};

/* obj.<attribute a> (new reference), through @layout where it can */
static inline __attribute__((always_inline)) PyObject *get_attr(const struct slot_ref *layout,
                                                             int a, PyObject *obj)
{
    const struct slot_ref *ref = &layout[a];
    if (Py_TYPE(obj) == ref->type && ref->offset >= 0) {
        PyObject *v = *(PyObject **)((char *)obj + ref->offset);
        if (v) {
            Py_INCREF(v);
            return v;
        }
        /* an unset slot: getattr raises the AttributeError */
    }
    return PyObject_GetAttr(obj, s_attr[a]);
}

/* obj.<attribute a> as a borrowed reference when it is a set __slots__ member of
 * the layout's class, else NULL (no error set: the caller takes another way) */
static PyObject *peek_attr(const struct slot_ref *layout, int a, PyObject *obj)
{
    const struct slot_ref *ref = &layout[a];
    if (Py_TYPE(obj) == ref->type && ref->offset >= 0)
        return *(PyObject **)((char *)obj + ref->offset);
    return NULL;
}

/* ctx[i] is (slot_layout(*classes), classes): the layout, its classes kept alive */
static const struct slot_ref *ctx_layout(PyObject *ctx, int i)
{
    PyObject *t = PyTuple_GET_ITEM(ctx, i), *b;
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2 || !PyBytes_Check(b = PyTuple_GET_ITEM(t, 0)) ||
        PyBytes_GET_SIZE(b) != (Py_ssize_t)(A_N * sizeof(struct slot_ref))) {
        PyErr_SetString(PyExc_TypeError, "tracerec: ctx holds no slot layout");
        return NULL;
    }
    return (const struct slot_ref *)PyBytes_AS_STRING(b);
}

/* as_u64's general case: any int subclass, or one of 2**60 and above */
static int as_u64_slow(PyObject *o, uint64_t *out)
{
    if (!PyLong_Check(o))
        return 0;
    if (_PyLong_Sign(o) < 0 || _PyLong_NumBits(o) > 64) {
        if (PyErr_Occurred())
            return -1;
        return 0;
    }
    *out = PyLong_AsUnsignedLongLongMask(o);
    if (*out == (uint64_t)-1 && PyErr_Occurred())
        return -1;
    return 1;
}

/* -1 error, 0 no (or not a 64-bit value: the slow path decides), 1 yes.
 * PyLong_AsUnsignedLongLong goes through _PyLong_AsByteArray for every
 * value above 2**30 (each address here), a third of the record's cost; the
 * sign and bit-count checks make the masking conversion exact. Inline: a
 * record reads some fifteen ints, nearly all of them below 2**60. */
/* (always inline, as get_attr: a record makes a dozen of these calls, each
 * some ten instructions of call overhead out of line) */
static inline __attribute__((always_inline)) int as_u64(PyObject *o, uint64_t *out)
{
#if PY_VERSION_HEX < 0x030C0000
    /* CPython 3.11: ob_size is the signed number of 30-bit digits; an int
     * below 2**60 (every address, and most values here) is read directly */
    if (PyLong_CheckExact(o)) {
        Py_ssize_t size = Py_SIZE(o);
        const digit *d = ((PyLongObject *)o)->ob_digit;
        if (size == 0) {
            *out = 0;
            return 1;
        }
        if (size == 1) {
            *out = d[0];
            return 1;
        }
        if (size == 2) {
            *out = (uint64_t)d[0] | (uint64_t)d[1] << PyLong_SHIFT;
            return 1;
        }
    }
#endif
    return as_u64_slow(o, out);
}

/* ctx[i], a struct ctx_words, copied to *out: 0, or -1 with an error */
static inline int ctx_words(PyObject *ctx, int i, struct ctx_words *out)
{
    PyObject *b = PyTuple_GET_ITEM(ctx, i);
    if (!PyBytes_CheckExact(b) || PyBytes_GET_SIZE(b) != (Py_ssize_t)sizeof *out) {
        PyErr_Format(PyExc_TypeError, "tracerec: ctx[%d] is not %zu bytes of words", i,
                     sizeof *out);
        return -1;
    }
    memcpy(out, PyBytes_AS_STRING(b), sizeof *out);
    return 0;
}

static uint64_t read_u64_at(uint64_t addr)
{
    uint64_t v;
    memcpy(&v, (const void *)(uintptr_t)addr, 8);
    return v;
}

/* obj.<a> as a uint64: 1 done, 0 not one (slow path), -1 error */
static int attr_u64(const struct slot_ref *L, int a, PyObject *obj, uint64_t *out)
{
    PyObject *v = get_attr(L, a, obj);
    int r;
    if (!v)
        return -1;
    r = as_u64(v, out);
    Py_DECREF(v);
    return r;
}

/* snapshot[i] == obj.<a>: 1 equal, 0 not, -1 error */
static int same_field(const struct slot_ref *L, PyObject *snap, Py_ssize_t i, PyObject *obj, int a)
{
    PyObject *v = get_attr(L, a, obj);
    int r;
    if (!v)
        return -1;
    /* (RichCompareBool answers "equal" for the same object without a comparison) */
    r = PyObject_RichCompareBool(PyTuple_GET_ITEM(snap, i), v, Py_EQ);
    Py_DECREF(v);
    return r;
}

/* What a placement is computed from (FaultTracer's VmaSnapshot, in its order):
 * the first SNAP_VMA_FIELDS of the VMA, the rest of the mm */
static const int snap_fields[] = {A_VM_START, A_VM_END, A_VM_FLAGS, A_VM_OPS, A_VM_FILE,
                                  A_VM_PRIVATE_DATA, A_MM_START_BRK, A_MM_END_DATA};
#define SNAP_LEN 8
#define SNAP_VMA_FIELDS 6
/* the VMA memo: [vma, placement, the snapshot's SNAP_LEN field objects] */
#define VMA_MEMO_LEN (2 + SNAP_LEN)

/*
 * The memo of the last placement found (@memo, VMA_MEMO_LEN items): its VMA,
 * the placement and the very objects its fields held. When @vma is that VMA
 * and each field still holds the same object, the snapshot is equal and so
 * is the placement, without a dict lookup or a comparison. 1 with *pl set
 * (borrowed; left None when @addr is outside the VMA), 0 when the memo
 * does not answer.
 */
static int placement_memo(const struct slot_ref *L, PyObject *memo, PyObject *vma, PyObject *mm,
                          uint64_t addr, PyObject **pl)
{
    PyObject *const *items = ((PyListObject *)memo)->ob_item;
    uint64_t start, end;

    if (items[0] != vma)
        return 0;
    /* the fields read in place, their classes checked once (each VMA field's
     * layout entry names the VMA class, each mm field's the mm class) */
    if (Py_TYPE(vma) != L[A_VM_START].type || Py_TYPE(mm) != L[A_MM_START_BRK].type)
        return 0;
    /* snap_fields, in its order, unrolled */
#define SAME(obj, a, i) \
    (L[a].offset >= 0 && *(PyObject **)((char *)(obj) + L[a].offset) == items[2 + (i)])
    if (!(SAME(vma, A_VM_START, 0) && SAME(vma, A_VM_END, 1) && SAME(vma, A_VM_FLAGS, 2) &&
          SAME(vma, A_VM_OPS, 3) && SAME(vma, A_VM_FILE, 4) && SAME(vma, A_VM_PRIVATE_DATA, 5) &&
          SAME(mm, A_MM_START_BRK, 6) && SAME(mm, A_MM_END_DATA, 7)))
        return 0;
#undef SAME
    if (as_u64(items[2], &start) != 1 || as_u64(items[3], &end) != 1)
        return 0;
    if (start <= addr && addr < end)
        *pl = items[1];
    return 1;
}

/* Remember @vma's placement @pl and its fields' objects now in @memo (best
 * effort: a field that is not a slot member leaves the memo empty) */
static void placement_remember(const struct slot_ref *L, PyObject *memo, PyObject *vma,
                               PyObject *mm, PyObject *pl)
{
    PyObject *objs[SNAP_LEN];
    for (int k = 0; k < SNAP_LEN; k++) {
        if (!(objs[k] = peek_attr(L, snap_fields[k], k < SNAP_VMA_FIELDS ? vma : mm)))
            return;
    }
    /* item 0 last: the memo answers only once it is whole */
    PyList_SetItem(memo, 0, Py_NewRef(Py_None));
    PyList_SetItem(memo, 1, Py_NewRef(pl));
    for (int k = 0; k < SNAP_LEN; k++)
        PyList_SetItem(memo, 2 + k, Py_NewRef(objs[k]));
    PyList_SetItem(memo, 0, Py_NewRef(vma));
}

/*
 * The remembered placement of @vma for an address @addr: from the memo of
 * the last one (@memo, see placement_memo), or FaultTracer's placement memo
 * (@vmas: VMA -> (snapshot, placement)). Sets *pl (borrowed) to the
 * placement, or leaves it None when @addr is outside @vma. Returns 1 done,
 * 0 when neither has a valid entry (the Python method computes it), -1 on
 * an error.
 */
static int placement(const struct slot_ref *L, PyObject *vmas, PyObject *memo, PyObject *vma,
                     PyObject *mm, uint64_t addr, PyObject **pl)
{
    uint64_t start, end, snap_start, snap_end;
    PyObject *ent, *snap;
    int r;

    if (!PyList_CheckExact(memo) || PyList_GET_SIZE(memo) != VMA_MEMO_LEN) {
        PyErr_SetString(PyExc_TypeError, "tracerec: bad VMA memo");
        return -1;
    }
    if (placement_memo(L, memo, vma, mm, addr, pl))
        return 1;
    if ((r = attr_u64(L, A_VM_START, vma, &start)) != 1 ||
        (r = attr_u64(L, A_VM_END, vma, &end)) != 1)
        return r;
    if (!(start <= addr && addr < end))
        return 1;
    ent = PyDict_GetItemWithError(vmas, vma); /* borrowed */
    if (!ent)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_Check(ent) || PyTuple_GET_SIZE(ent) != 2 ||
        !PyTuple_Check(snap = PyTuple_GET_ITEM(ent, 0)) || PyTuple_GET_SIZE(snap) != SNAP_LEN)
        return 0;
    /* snapshot: the snap_fields, vm_start and vm_end first */
    if ((r = as_u64(PyTuple_GET_ITEM(snap, 0), &snap_start)) != 1 ||
        (r = as_u64(PyTuple_GET_ITEM(snap, 1), &snap_end)) != 1)
        return r;
    if (snap_start != start || snap_end != end)
        return 0;
    for (Py_ssize_t i = 2; i < SNAP_LEN; i++) {
        r = same_field(L, snap, i, i < SNAP_VMA_FIELDS ? vma : mm, snap_fields[i]);
        if (r != 1)
            return r;
    }
    *pl = PyTuple_GET_ITEM(ent, 1);
    placement_remember(L, memo, vma, mm, *pl);
    return 1;
}

/* The number of @obj in the Interner (@ids, @new_objs): 0 for None; a new
 * object gets the next number and joins the list of new ones. -1 on error. */
static int64_t intern_id(PyObject *ids, PyObject *new_objs, PyObject *obj)
{
    PyObject *n;
    Py_ssize_t id;

    if (obj == Py_None)
        return 0;
    n = PyDict_GetItemWithError(ids, obj); /* borrowed */
    if (n)
        return (int64_t)PyLong_AsLongLong(n);
    if (PyErr_Occurred())
        return -1;
    id = PyDict_GET_SIZE(ids) + 1;
    if (id > (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "tracerec: too many numbered objects");
        return -1;
    }
    n = PyLong_FromSsize_t(id);
    if (!n)
        return -1;
    if (PyDict_SetItem(ids, obj, n) < 0 || PyList_Append(new_objs, obj) < 0) {
        Py_DECREF(n);
        return -1;
    }
    Py_DECREF(n);
    return id;
}

/*
 * The memos below keep the last MEMO_WAYS distinct entries of @width items
 * each, most recent first, in one list from item @base: a fault and the one
 * after it often alternate between two of each (a read fault then a write
 * fault on the same page, at two instructions). Make room at way 0: every
 * entry moves one way down, the last is dropped.
 */
#define MEMO_WAYS 2
static void memo_shift(PyObject *memo, Py_ssize_t base, int width)
{
    for (int w = MEMO_WAYS - 1; w > 0; w--) {
        for (int k = 0; k < width; k++) {
            PyObject *v = PyList_GET_ITEM(memo, base + (Py_ssize_t)(w - 1) * width + k);
            PyList_SetItem(memo, base + (Py_ssize_t)w * width + k, Py_NewRef(v));
        }
    }
}

/*
 * intern_id() with a memo of the recent records' objects: @memo is a list of
 * ID_MEMO_LEN items, for each position of a record (kind, detail, access,
 * instruction, placement) MEMO_WAYS entries (object, its number).
 * Consecutive faults mostly name the same kind, outcome, access,
 * instruction and placement, so the dict lookups are skipped for the very
 * same objects. The memo holds references, so an object found there by
 * identity is alive and is the one numbered.
 */
#define ID_MEMO_LEN (5 * MEMO_WAYS * 2)
static int64_t intern_memo(PyObject *memo, int i, PyObject *ids, PyObject *new_objs,
                           PyObject *obj)
{
    Py_ssize_t base = (Py_ssize_t)i * MEMO_WAYS * 2;
    int64_t id;
    PyObject *n;

    if (obj == Py_None)
        return 0;
    for (int w = 0; w < MEMO_WAYS; w++) {
        if (PyList_GET_ITEM(memo, base + 2 * w) == obj) {
            uint64_t known; /* a number intern_memo() stored: 1..UINT32_MAX */
            if (as_u64(PyList_GET_ITEM(memo, base + 2 * w + 1), &known) == 1 &&
                known <= UINT32_MAX)
                return (int64_t)known;
        }
    }
    if ((id = intern_id(ids, new_objs, obj)) < 0 || !(n = PyLong_FromLongLong(id)))
        return -1;
    memo_shift(memo, base, 2);
    PyList_SetItem(memo, base, Py_NewRef(obj)); /* the old items are released */
    PyList_SetItem(memo, base + 1, n);
    return id;
}

static void put(uint8_t **p, const void *v, size_t n)
{
    /* the hosts mmuemu runs on (x86-64, arm64) are little-endian, as RECORD */
    memcpy(*p, v, n);
    *p += n;
}

/*
 * Append a record's bytes to the bytearray @buf. PyByteArray_Resize grows
 * the buffer by an eighth at a time (some sixty reallocs, each a copy, to
 * fill a batch), and the tracer empties it after every batch, which gives
 * the memory back. So when the buffer is full, it is resized once to
 * @reserve bytes (a batch) and its length set back, keeping the room: then
 * a batch costs one realloc. Only for a buffer nobody holds a view of
 * (ob_exports), whose data starts at its allocation (ob_start), as
 * PyByteArray_Resize leaves it. 0 or -1.
 */
static int append_bytes(PyObject *buf, const uint8_t *bytes, Py_ssize_t reserve)
{
    PyByteArrayObject *ba = (PyByteArrayObject *)buf;
    Py_ssize_t len = Py_SIZE(buf), need = len + RECORD_SIZE;

    if (need + 1 > ba->ob_alloc) {
        if (PyByteArray_Resize(buf, need > reserve ? need : reserve) < 0)
            return -1;
    }
    if (ba->ob_exports > 0 || ba->ob_start != ba->ob_bytes || need + 1 > ba->ob_alloc) {
        if (PyByteArray_Resize(buf, need) < 0) /* the general way */
            return -1;
    } else {
        Py_SET_SIZE(buf, need);
        ba->ob_bytes[need] = '\0'; /* as PyByteArray_Resize keeps it */
    }
    memcpy(PyByteArray_AS_STRING(buf) + len, bytes, RECORD_SIZE);
    return 0;
}

/* The room to keep in the record buffer for a batch of @batch bytes (the
 * drain threshold; a buffer stops growing there), bounded for a huge one */
static Py_ssize_t batch_reserve(uint64_t batch)
{
    return batch < ((uint64_t)1 << 24) ? (Py_ssize_t)batch : (Py_ssize_t)1 << 24;
}

/* Append @rec to the bytearray @buf, numbering its objects (with @memo,
 * see intern_memo), keeping room for @reserve bytes. 0 or -1. */
static int append_record(PyObject *buf, PyObject *ids, PyObject *new_objs, PyObject *memo,
                         const struct record *rec, Py_ssize_t reserve)
{
    uint8_t bytes[RECORD_SIZE], *p = bytes, pad = 0;
    uint32_t n[5];

    if (!PyList_CheckExact(memo) || PyList_GET_SIZE(memo) != ID_MEMO_LEN) {
        PyErr_SetString(PyExc_TypeError, "tracerec: bad ids memo");
        return -1;
    }
    for (int i = 0; i < 5; i++) {
        int64_t id = intern_memo(memo, i, ids, new_objs, rec->objs[i]);
        if (id < 0)
            return -1;
        n[i] = (uint32_t)id;
    }
    put(&p, &rec->tag, 1);
    put(&p, &rec->flags, 1);
    put(&p, &rec->signal, 1);
    put(&p, &pad, 1);
    put(&p, &rec->pid, 4);
    put(&p, &rec->insns, 8);
    put(&p, &rec->addr, 8);
    put(&p, &rec->a, 8);
    put(&p, &rec->b, 8);
    put(&p, &rec->c, 8);
    put(&p, &rec->d, 8);
    put(&p, n, sizeof n);
    put(&p, &rec->prot, 4);
    return append_bytes(buf, bytes, reserve);
}

/* PyObject_IsTrue, answered at once for the bools the kernel passes */
static int truth(PyObject *o)
{
    if (o == Py_True)
        return 1;
    if (o == Py_False)
        return 0;
    return PyObject_IsTrue(o);
}

/* task.pid as a u32: 1, 0 (slow path), -1 */
static int task_pid(const struct slot_ref *L, PyObject *task, uint32_t *pid)
{
    uint64_t v = 0;
    int r = attr_u64(L, A_TASK_PID, task, &v);
    if (r == 1 && v > UINT32_MAX)
        return 0;
    *pid = (uint32_t)v;
    return r;
}

/*
 * record_fault's fast path. Returns 1 with the record appended, 0 when the
 * Python method must record this fault (nothing appended), -1 on an error.
 */
static int record(PyObject *ctx, PyObject *const *a)
{
    PyObject *task = a[0], *address = a[1], *access = a[2], *vmf = a[3], *vma = a[4],
             *major = a[5], *signal = a[6], *user = a[7];
    PyObject *kind = NULL, *detail = NULL, *mm = NULL, *tmp = NULL, *key = NULL, *memo;
    PyObject *pl = Py_None, *insn = s_empty; /* borrowed */
    uint64_t memo_pc;
    struct ctx_words w;
    struct record rec = {.tag = TAG_FAULT};
    const struct slot_ref *L;
    uint64_t sig;
    int ret = -1, r, is_user, is_major;

    if (vmf == Py_None || !PyByteArray_Check(PyTuple_GET_ITEM(ctx, CTX_PENDING)))
        return 0;
    if (!(L = ctx_layout(ctx, CTX_LAYOUT)) || ctx_words(ctx, CTX_WORDS, &w))
        return -1;
    if ((r = as_u64(address, &rec.addr)) != 1 || (r = as_u64(signal, &sig)) != 1)
        return r;
    if (sig > 255)
        return 0;
    rec.signal = (uint8_t)sig;
    if ((is_user = truth(user)) < 0 || (is_major = truth(major)) < 0)
        return -1;
    rec.flags = (is_user ? F_USER : 0) | (is_major ? F_MAJOR : 0);

    /* the handler's kind value and detail */
    if (!(tmp = get_attr(L, A_VMF_KIND, vmf)))
        return -1;
    memo = PyTuple_GET_ITEM(ctx, CTX_KIND_MEMO);
    if (!PyList_CheckExact(memo) || PyList_GET_SIZE(memo) != 2 * MEMO_WAYS) {
        Py_DECREF(tmp);
        PyErr_SetString(PyExc_TypeError, "tracerec: bad kind memo");
        return -1;
    }
    for (int w = 0; w < MEMO_WAYS && !kind; w++) {
        if (PyList_GET_ITEM(memo, 2 * w) == tmp)
            kind = Py_NewRef(PyList_GET_ITEM(memo, 2 * w + 1));
    }
    if (kind) {
        Py_DECREF(tmp);
    } else if ((kind = PyObject_GetAttr(tmp, s_value)) != NULL) {
        memo_shift(memo, 0, 2);
        PyList_SetItem(memo, 0, tmp); /* steals tmp, and a new reference to kind */
        PyList_SetItem(memo, 1, Py_NewRef(kind));
    } else {
        Py_DECREF(tmp);
    }
    tmp = NULL;
    if (!kind || !(detail = get_attr(L, A_VMF_DETAIL, vmf)))
        goto out;
    if (detail == Py_None) {
        ret = 0; /* Python: a kind without a detail is a name */
        goto out;
    }

    /* the PTE's raw value, where the handler left its address */
    if (!rec.signal) {
        uint64_t pa;
        if (!(tmp = get_attr(L, A_VMF_PTE_PA, vmf)))
            goto out;
        r = tmp == Py_None ? 0 : as_u64(tmp, &pa);
        Py_CLEAR(tmp);
        if (r != 1 || pa == 0) {
            ret = r < 0 ? -1 : 0;
            goto out;
        }
        if ((pa >> 3) >= w.phys_size / 8) {
            ret = 0;
            goto out;
        }
        rec.b = read_u64_at(w.phys + (pa >> 3) * 8);
        rec.flags |= F_PTE;
    }

    if (!(mm = get_attr(L, A_TASK_MM, task)))
        goto out;

    /* the VMA's placement, if remembered and still valid */
    if (vma != Py_None) {
        r = placement(L, PyTuple_GET_ITEM(ctx, CTX_VMAS), PyTuple_GET_ITEM(ctx, CTX_VMA_MEMO),
                      vma, mm, rec.addr, &pl);
        if (r != 1) {
            ret = r;
            goto out;
        }
    }

    /* the pc the fill hook published for this fault, and its instruction */
    if (is_user) {
        PyObject *cid, *pc;
        if (read_u64_at(w.fault_vaddr_at) != rec.addr) {
            ret = 0;
            goto out;
        }
        rec.a = read_u64_at(w.fault_pc_at);
        rec.flags |= F_PC;
        if (!(cid = get_attr(L, A_MM_CONTEXT_ID, mm)))
            goto out;
        /* a recent record's instruction, for the same address space and pc,
         * while the tracer has dropped no cached instruction since */
        memo = PyTuple_GET_ITEM(ctx, CTX_INSN_MEMO);
        if (!PyList_CheckExact(memo) || PyList_GET_SIZE(memo) != 3 * MEMO_WAYS) {
            Py_DECREF(cid);
            PyErr_SetString(PyExc_TypeError, "tracerec: bad instruction memo");
            goto out;
        }
        insn = NULL;
        for (int w = 0; w < MEMO_WAYS; w++) {
            if (PyList_GET_ITEM(memo, 3 * w) == cid &&
                as_u64(PyList_GET_ITEM(memo, 3 * w + 1), &memo_pc) == 1 && memo_pc == rec.a) {
                insn = PyList_GET_ITEM(memo, 3 * w + 2);
                break;
            }
        }
        if (insn) {
            Py_DECREF(cid);
        } else {
            pc = PyLong_FromUnsignedLongLong(rec.a);
            key = pc ? PyTuple_Pack(2, cid, pc) : NULL;
            if (!key) {
                Py_DECREF(cid);
                Py_XDECREF(pc);
                goto out;
            }
            insn = PyDict_GetItemWithError(PyTuple_GET_ITEM(ctx, CTX_DISASM), key);
            /* Python: disasm.get(key) or self._insn(mm, pc) */
            if (!insn || !PyUnicode_Check(insn) || PyUnicode_GET_LENGTH(insn) == 0) {
                Py_DECREF(cid);
                Py_DECREF(pc);
                ret = PyErr_Occurred() ? -1 : 0;
                goto out;
            }
            Py_INCREF(insn);
            memo_shift(memo, 0, 3);
            PyList_SetItem(memo, 0, cid); /* steals cid, pc and insn */
            PyList_SetItem(memo, 1, pc);
            PyList_SetItem(memo, 2, insn);
        }
    }

    if ((r = task_pid(L, task, &rec.pid)) != 1) {
        ret = r;
        goto out;
    }
    rec.insns = read_u64_at(w.insns_at);
    rec.objs[0] = kind;
    rec.objs[1] = detail;
    rec.objs[2] = access;
    rec.objs[3] = insn;
    rec.objs[4] = pl;
    if (append_record(PyTuple_GET_ITEM(ctx, CTX_PENDING), PyTuple_GET_ITEM(ctx, CTX_IDS),
                      PyTuple_GET_ITEM(ctx, CTX_NEW), PyTuple_GET_ITEM(ctx, CTX_IDS_MEMO),
                      &rec, batch_reserve(w.batch)) < 0)
        goto out;
    ret = 1;
out:
    Py_XDECREF(kind);
    Py_XDECREF(detail);
    Py_XDECREF(mm);
    Py_XDECREF(key);
    return ret;
}

/* After a record: drain when the batch (ctx[words_i].batch) is full. New
 * reference or NULL. */
static PyObject *after_record(PyObject *ctx, int pending_i, int words_i, int drain_i)
{
    struct ctx_words w;
    if (ctx_words(ctx, words_i, &w))
        return NULL;
    if ((uint64_t)PyByteArray_GET_SIZE(PyTuple_GET_ITEM(ctx, pending_i)) >= w.batch)
        return PyObject_CallNoArgs(PyTuple_GET_ITEM(ctx, drain_i));
    Py_RETURN_NONE;
}

/*
 * The fault recorder: FaultTracer.fault in C, a builtin method whose self is
 * the ctx (fault_recorder binds it), so a call passes the arguments as they
 * are: no partial's copy with the ctx in front, and 3.11 specializes the
 * call of a METH_FASTCALL builtin.
 */
static PyObject *record_fault(PyObject *ctx, PyObject *const *args, Py_ssize_t nargs)
{
    int r;

    if (nargs != NARGS) {
        PyErr_Format(PyExc_TypeError, "record_fault takes %d arguments (%zd given)", NARGS,
                     nargs);
        return NULL;
    }
    r = record(ctx, args);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyObject_Vectorcall(PyTuple_GET_ITEM(ctx, CTX_SLOW), args, NARGS, NULL);
    return after_record(ctx, CTX_PENDING, CTX_WORDS, CTX_DRAIN);
}

static PyMethodDef record_fault_def = {
    "record_fault", (PyCFunction)(void (*)(void))record_fault, METH_FASTCALL,
    "record_fault(task, address, access, vmf, vma, major, signal, user)\n"
    "FaultTracer.fault's record step in C; the Python method (the ctx's slow\n"
    "path) records whatever this cannot."};

/* ---- TLB-flush events ---------------------------------------------------- */

/* How many pages a flush may span for insn_in_range() to test each one */
#define INSN_PAGES_TESTED 16
/* FL_INSN_PAGES: a bitmap of INSN_PAGE_BITS bits, bit (vpn % INSN_PAGE_BITS) */
#define INSN_PAGE_BITS 32768

/*
 * Whether the disassembly cache may hold an instruction of @mm in [start,
 * end): 1 yes (or a key this cannot read: Python decides), 0 no, -1 error.
 * A flush of a few pages tests each page's bit in FL_INSN_PAGES, set for
 * the page of every cached instruction of any address space (so a set bit
 * may be another page's, or another mm's: Python then drops nothing and
 * records the same); a longer range scans the cache.
 */
static int insn_in_range(PyObject *ctx, const struct slot_ref *L, PyObject *disasm,
                         PyObject *mm, uint64_t start, uint64_t end)
{
    PyObject *pages = PyTuple_GET_ITEM(ctx, FL_INSN_PAGES), *cid, *key, *val;
    Py_ssize_t pos = 0;
    uint64_t pc, cid_value;
    int r;

    if (end <= start)
        return 0;
    if (PyByteArray_CheckExact(pages) && PyByteArray_GET_SIZE(pages) == INSN_PAGE_BITS / 8 &&
        ((end - 1) >> 12) - (start >> 12) < INSN_PAGES_TESTED) {
        const uint8_t *bits = (const uint8_t *)PyByteArray_AS_STRING(pages);
        for (uint64_t vpn = start >> 12; vpn <= (end - 1) >> 12; vpn++) {
            uint64_t i = vpn % INSN_PAGE_BITS;
            if (bits[i >> 3] & (1u << (i & 7)))
                return 1;
        }
        return 0;
    }
    if (!(cid = get_attr(L, A_MM_CONTEXT_ID, mm)))
        return -1;
    r = as_u64(cid, &cid_value);
    Py_DECREF(cid);
    if (r != 1)
        return r < 0 ? -1 : 1;
    while (PyDict_Next(disasm, &pos, &key, &val)) {
        uint64_t key_cid;
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2 ||
            as_u64(PyTuple_GET_ITEM(key, 0), &key_cid) != 1 ||
            as_u64(PyTuple_GET_ITEM(key, 1), &pc) != 1)
            return PyErr_Occurred() ? -1 : 1;
        if (key_cid == cid_value && start <= pc && pc < end)
            return 1;
    }
    return 0;
}

/*
 * record_flush's fast path: a page or range flush of the running task's mm
 * whose start lies in the mm's cached VMA (mmap_cache: what find_vma()
 * answers without a search) with a remembered placement, and no cached
 * instruction to drop. Same return convention as record().
 */
static int record_flush_common(PyObject *ctx, PyObject *const *a)
{
    PyObject *mm = a[0], *kind = a[1];
    PyObject *disasm = PyTuple_GET_ITEM(ctx, FL_DISASM);
    PyObject *task = NULL, *task_mm = NULL, *tree = NULL, *vma = NULL;
    PyObject *pl = Py_None; /* borrowed */
    struct record rec = {.tag = TAG_OTHER, .flags = F_PLACED, .c = -1};
    const struct slot_ref *L;
    uint64_t start, end;
    struct ctx_words w;
    int ret = -1, r;

    if (kind == PyTuple_GET_ITEM(ctx, FL_PAGE))
        rec.objs[0] = PyTuple_GET_ITEM(ctx, FL_PAGE_NAME);
    else if (kind == PyTuple_GET_ITEM(ctx, FL_RANGE))
        rec.objs[0] = PyTuple_GET_ITEM(ctx, FL_RANGE_NAME);
    else
        return 0; /* mm, icache, or an equal string that is another object */
    if (!PyByteArray_Check(PyTuple_GET_ITEM(ctx, FL_PENDING)) || !PyDict_Check(disasm))
        return 0;
    if ((r = as_u64(a[2], &start)) != 1 || (r = as_u64(a[3], &end)) != 1)
        return r;
    if (!(L = ctx_layout(ctx, FL_LAYOUT)))
        return -1;

    /* a cached instruction in the flushed range: Python drops it */
    if (PyDict_GET_SIZE(disasm) && (r = insn_in_range(ctx, L, disasm, mm, start, end)) != 0)
        return r < 0 ? -1 : 0;

    if (!(task = PyObject_GetAttr(PyTuple_GET_ITEM(ctx, FL_KERNEL), s_current)))
        goto out;
    if (task == Py_None) {
        ret = 0; /* no task runs yet: Python finds the owner */
        goto out;
    }
    if (!(task_mm = get_attr(L, A_TASK_MM, task)))
        goto out;
    if (task_mm != mm) {
        ret = 0; /* another task's mm: Python finds its owner */
        goto out;
    }
    if (!(tree = get_attr(L, A_MM_RB, mm)) || !(vma = get_attr(L, A_MMAP_CACHE, tree)))
        goto out;
    if (vma == Py_None) {
        ret = 0;
        goto out;
    }
    r = placement(L, PyTuple_GET_ITEM(ctx, FL_VMAS), PyTuple_GET_ITEM(ctx, FL_VMA_MEMO), vma,
                  mm, start, &pl);
    if (r != 1 || pl == Py_None) {
        ret = r < 0 ? -1 : 0; /* start outside the cached VMA: find_vma() would search */
        goto out;
    }
    if ((r = task_pid(L, task, &rec.pid)) != 1) {
        ret = r;
        goto out;
    }
    if (ctx_words(ctx, FL_WORDS, &w))
        goto out;
    rec.insns = read_u64_at(w.insns_at);
    /* _OTHER: addr = start, a = length, b = result 0, c = page -1, d = flags 0,
     * kind, outcome "", role None (placed), placement */
    rec.addr = start;
    rec.a = end > start ? end - start : 0;
    rec.objs[1] = s_empty;
    rec.objs[2] = Py_None;
    rec.objs[3] = Py_None;
    rec.objs[4] = pl;
    if (append_record(PyTuple_GET_ITEM(ctx, FL_PENDING), PyTuple_GET_ITEM(ctx, FL_IDS),
                      PyTuple_GET_ITEM(ctx, FL_NEW), PyTuple_GET_ITEM(ctx, FL_IDS_MEMO),
                      &rec, batch_reserve(w.batch)) < 0)
        goto out;
    ret = 1;
out:
    Py_XDECREF(task);
    Py_XDECREF(task_mm);
    Py_XDECREF(tree);
    Py_XDECREF(vma);
    return ret;
}

/* The flush recorder: FaultTracer.tlb_flush in C, bound to its ctx as the
 * fault recorder is. */
static PyObject *record_flush(PyObject *ctx, PyObject *const *args, Py_ssize_t nargs)
{
    int r;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "record_flush takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    r = record_flush_common(ctx, args);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyObject_Vectorcall(PyTuple_GET_ITEM(ctx, FL_SLOW), args, 4, NULL);
    return after_record(ctx, FL_PENDING, FL_WORDS, FL_DRAIN);
}

static PyMethodDef record_flush_def = {
    "record_flush", (PyCFunction)(void (*)(void))record_flush, METH_FASTCALL,
    "record_flush(mm, kind, start, end)\n"
    "FaultTracer.tlb_flush for a page or range flush in C; the Python method\n"
    "(the ctx's slow path) handles whatever this cannot."};

/* A recorder: def bound to ctx, once ctx is a tuple of n items. */
static PyObject *bind(PyMethodDef *def, Py_ssize_t n, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != n) {
        PyErr_Format(PyExc_TypeError, "%s_recorder takes one ctx tuple of %zd items",
                     def->ml_name + sizeof "record_" - 1, n);
        return NULL;
    }
    return PyCFunction_New(def, args[0]);
}

static PyObject *fault_recorder(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    return bind(&record_fault_def, CTX_N, args, nargs);
}

static PyObject *flush_recorder(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    return bind(&record_flush_def, FL_N, args, nargs);
}

/* ---- the slot layout ----------------------------------------------------- */

/*
 * slot_layout(vmf_type, task_type, mm_type, vma_type, tree_type): the bytes
 * CTX_LAYOUT / FL_LAYOUT hold: per attribute (A_*), its class and, where the
 * class has it as a __slots__ member (T_OBJECT_EX, as @dataclass(slots=True)
 * makes), the member's offset in the object; -1 otherwise. The ctx holds the
 * classes too, so the borrowed pointers stay valid.
 */
static PyObject *slot_layout(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* which argument's class each attribute is read from */
    static const int owner[A_N] = {
        [A_VMF_KIND] = 0, [A_VMF_DETAIL] = 0, [A_VMF_PTE_PA] = 0,
        [A_TASK_MM] = 1, [A_TASK_PID] = 1,
        [A_MM_CONTEXT_ID] = 2, [A_MM_START_BRK] = 2, [A_MM_END_DATA] = 2, [A_MM_RB] = 2,
        [A_VM_START] = 3, [A_VM_END] = 3, [A_VM_FLAGS] = 3, [A_VM_OPS] = 3, [A_VM_FILE] = 3,
        [A_VM_PRIVATE_DATA] = 3, [A_MMAP_CACHE] = 4,
    };
    struct slot_ref layout[A_N];
    (void)self;

    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "slot_layout takes 5 classes (%zd given)", nargs);
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        if (!PyType_Check(args[i])) {
            PyErr_Format(PyExc_TypeError, "slot_layout: argument %d is not a class", i + 1);
            return NULL;
        }
    }
    for (int a = 0; a < A_N; a++) {
        PyTypeObject *type = (PyTypeObject *)args[owner[a]];
        PyObject *d = _PyType_Lookup(type, s_attr[a]); /* borrowed, no error set */
        layout[a].type = type;
        layout[a].offset = -1;
        if (d && Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if (m->type == T_OBJECT_EX && !(m->flags & READONLY) && m->offset > 0)
                layout[a].offset = m->offset;
        }
    }
    return PyBytes_FromStringAndSize((const char *)layout, sizeof layout);
}

static PyMethodDef tracerec_methods[] = {
    {"slot_layout", (PyCFunction)(void (*)(void))slot_layout, METH_FASTCALL,
     "slot_layout(vmf_type, task_type, mm_type, vma_type, tree_type)\n"
     "Where the records' attributes lie in objects of these classes (the\n"
     "ctx's layout item)."},
    {"fault_recorder", (PyCFunction)(void (*)(void))fault_recorder, METH_FASTCALL,
     "fault_recorder(ctx)\n"
     "record_fault bound to ctx: call it with (task, address, access, vmf, vma,\n"
     "major, signal, user), as FaultTracer.fault."},
    {"flush_recorder", (PyCFunction)(void (*)(void))flush_recorder, METH_FASTCALL,
     "flush_recorder(ctx)\n"
     "record_flush bound to ctx: call it with (mm, kind, start, end), as\n"
     "FaultTracer.tlb_flush."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef tracerec_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_tracerec",
    .m_doc = "mmuemu fault tracer: the record steps in C (see mmuemu.emu.tracing).",
    .m_size = -1,
    .m_methods = tracerec_methods,
};

PyMODINIT_FUNC PyInit__tracerec(void)
{
    static const struct {
        PyObject **slot;
        const char *name;
    } names[] = {
        {&s_value, "_value_"}, {&s_empty, ""}, {&s_current, "current"},
    };
    PyObject *m;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!*names[i].slot && !(*names[i].slot = PyUnicode_InternFromString(names[i].name)))
            return NULL;
    }
    for (int a = 0; a < A_N; a++) {
        if (!s_attr[a] && !(s_attr[a] = PyUnicode_InternFromString(attr_names[a])))
            return NULL;
    }
    m = PyModule_Create(&tracerec_module);
    if (m && (PyModule_AddIntConstant(m, "RECORD_SIZE", RECORD_SIZE) < 0 ||
              PyModule_AddIntConstant(m, "MEMO_WAYS", MEMO_WAYS) < 0 ||
              PyModule_AddIntConstant(m, "VMA_MEMO_LEN", VMA_MEMO_LEN) < 0 ||
              PyModule_AddIntConstant(m, "WORDS_SIZE", sizeof(struct ctx_words)) < 0 ||
              PyModule_AddIntConstant(m, "INSN_PAGE_BITS", INSN_PAGE_BITS) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
