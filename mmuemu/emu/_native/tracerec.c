/*
 * tracerec.c - the fault tracer's record step in C (mmuemu.emu._tracerec).
 *
 * FaultTracer.fault (mmuemu/emu/tracing.py) runs once per page fault and, in
 * Python, costs about as much as a tenth of the fault it records. This is the
 * same step for the common case: the handler named the fault's kind, the
 * PTE's address is known, the VMA's placement and the instruction at the pc
 * are in the tracer's caches, and the native fill hook published the pc
 * (mmuemu_tlb_fill_faulting, state fields fault_vaddr / fault_pc). It
 * appends the same 14 values to the same list the Python method would.
 * Anything else (a cache miss, a fault without a PTE, a pc not published)
 * is handed to the Python method unchanged, before anything was appended,
 * so the records, and the trace, are the same either way.
 *
 * record_fault(ctx, task, address, access, vmf, vma, major, signal, user)
 * with ctx the tuple made by FaultTracer (see CTX_* below); the tracer
 * binds it with functools.partial as its `fault` attribute.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum {
    CTX_PENDING,     /* list: the flat records */
    CTX_VMAS,        /* dict: VMA -> (snapshot tuple, placement) */
    CTX_DISASM,      /* dict: (context_id, pc) -> instruction text */
    CTX_INSNS,       /* int: address of the native state's insns (uint64) */
    CTX_FAULT_VADDR, /* int: address of fault_vaddr (uint64) */
    CTX_FAULT_PC,    /* int: address of fault_pc (uint64) */
    CTX_PHYS,        /* int: host address of guest physical memory */
    CTX_PHYS_SIZE,   /* int: its size in bytes */
    CTX_BATCH,       /* int: drain when the list holds this many items */
    CTX_SLOW,        /* callable: the Python FaultTracer.fault (same arguments) */
    CTX_DRAIN,       /* callable: FaultTracer._drain() */
    CTX_FAULT_TAG,   /* int: the record tag of a fault (_FAULT) */
    CTX_N
};

#define NARGS 8 /* task, address, access, vmf, vma, major, signal, user */

static PyObject *s_mm, *s_pid, *s_kind, *s_value, *s_detail, *s_pte_pa, *s_context_id;
static PyObject *s_task, *s_mm_rb, *s_mmap_cache;
static PyObject *s_vm_start, *s_vm_end, *s_vm_flags, *s_vm_ops, *s_vm_file,
    *s_vm_private_data, *s_start_brk, *s_end_data, *s_empty;

/* -1 error, 0 no (or not a 64-bit value: the slow path decides), 1 yes */
static int as_u64(PyObject *o, uint64_t *out)
{
    if (!PyLong_Check(o))
        return 0;
    *out = PyLong_AsUnsignedLongLong(o);
    if (*out == (uint64_t)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static int ctx_u64(PyObject *ctx, int i, uint64_t *out)
{
    int r = as_u64(PyTuple_GET_ITEM(ctx, i), out);
    if (r == 0 && !PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "record_fault: ctx[%d] is not a 64-bit int", i);
    return r == 1 ? 0 : -1;
}

/* snapshot[i] == getattr(obj, name): 1 equal, 0 not, -1 error */
static int same_field(PyObject *snap, Py_ssize_t i, PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    int r;
    if (!v)
        return -1;
    r = PyObject_RichCompareBool(PyTuple_GET_ITEM(snap, i), v, Py_EQ);
    Py_DECREF(v);
    return r;
}

/*
 * The remembered placement of @vma for an address @addr (FaultTracer's
 * placement memo, @vmas: VMA -> (snapshot, placement)). Sets *pl (borrowed)
 * to the placement, or leaves it None when @addr is outside @vma. Returns 1
 * done, 0 when the memo has no valid entry (the Python method computes it),
 * -1 on an error.
 */
static int placement(PyObject *vmas, PyObject *vma, PyObject *mm, uint64_t addr, PyObject **pl)
{
    static PyObject **const names[] = {&s_vm_start, &s_vm_end, &s_vm_flags, &s_vm_ops,
                                       &s_vm_file, &s_vm_private_data};
    uint64_t start, end;
    PyObject *ent, *snap, *tmp;
    int r;

    if (!(tmp = PyObject_GetAttr(vma, s_vm_start)))
        return -1;
    r = as_u64(tmp, &start);
    Py_DECREF(tmp);
    if (r != 1)
        return r;
    if (!(tmp = PyObject_GetAttr(vma, s_vm_end)))
        return -1;
    r = as_u64(tmp, &end);
    Py_DECREF(tmp);
    if (r != 1)
        return r;
    if (!(start <= addr && addr < end))
        return 1;
    ent = PyDict_GetItemWithError(vmas, vma); /* borrowed */
    if (!ent)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_Check(ent) || PyTuple_GET_SIZE(ent) != 2 ||
        !PyTuple_Check(snap = PyTuple_GET_ITEM(ent, 0)) || PyTuple_GET_SIZE(snap) != 8)
        return 0;
    for (Py_ssize_t i = 0; i < 8; i++) {
        r = i < 6 ? same_field(snap, i, vma, *names[i])
                  : same_field(snap, i, mm, i == 6 ? s_start_brk : s_end_data);
        if (r != 1)
            return r;
    }
    *pl = PyTuple_GET_ITEM(ent, 1);
    return 1;
}

/*
 * The fast path. Returns 1 with the record appended, 0 when the Python
 * method must record this fault (nothing appended), -1 on an error.
 */
static int record(PyObject *ctx, PyObject *const *a)
{
    PyObject *task = a[0], *address = a[1], *access = a[2], *vmf = a[3], *vma = a[4],
             *major = a[5], *signal = a[6], *user = a[7];
    /* owned references, released at the end; pl and insn start borrowed */
    PyObject *kind = NULL, *detail = NULL, *pte = NULL, *mm = NULL, *pl = NULL, *pc = NULL,
             *insn = NULL, *pid = NULL, *insns = NULL, *tmp = NULL;
    PyObject *pl_b = Py_None, *insn_b = s_empty;
    PyObject *pending = PyTuple_GET_ITEM(ctx, CTX_PENDING);
    uint64_t addr, u;
    int ret = -1, r, is_signal, is_user;

    if (vmf == Py_None || !PyList_Check(pending))
        return 0;
    if ((r = as_u64(address, &addr)) != 1)
        return r;
    if ((is_signal = PyObject_IsTrue(signal)) < 0 || (is_user = PyObject_IsTrue(user)) < 0)
        return -1;

    /* the handler's kind value and detail */
    if (!(tmp = PyObject_GetAttr(vmf, s_kind)))
        return -1;
    kind = PyObject_GetAttr(tmp, s_value);
    Py_CLEAR(tmp);
    if (!kind)
        return -1;
    if (!(detail = PyObject_GetAttr(vmf, s_detail)))
        goto out;

    /* the PTE's raw value, where the handler left its address */
    if (!is_signal) {
        uint64_t pa, phys, size;
        if (!(tmp = PyObject_GetAttr(vmf, s_pte_pa)))
            goto out;
        r = tmp == Py_None ? 0 : as_u64(tmp, &pa);
        Py_CLEAR(tmp);
        if (r != 1 || pa == 0) {
            ret = r < 0 ? -1 : 0;
            goto out;
        }
        if (ctx_u64(ctx, CTX_PHYS, &phys) || ctx_u64(ctx, CTX_PHYS_SIZE, &size))
            goto out;
        if ((pa >> 3) >= size / 8) {
            ret = 0;
            goto out;
        }
        memcpy(&u, (const uint8_t *)(uintptr_t)phys + (pa >> 3) * 8, 8);
        if (!(pte = PyLong_FromUnsignedLongLong(u)))
            goto out;
    } else {
        pte = Py_NewRef(Py_None);
    }

    if (!(mm = PyObject_GetAttr(task, s_mm)))
        goto out;

    /* the VMA's placement, if remembered and still valid */
    if (vma != Py_None) {
        r = placement(PyTuple_GET_ITEM(ctx, CTX_VMAS), vma, mm, addr, &pl_b);
        if (r != 1) {
            ret = r;
            goto out;
        }
    }
    pl = Py_NewRef(pl_b);

    /* the pc the fill hook published for this fault, and its instruction */
    if (is_user) {
        uint64_t vaddr_at, pc_at, vaddr, pcv;
        PyObject *key, *cid;
        if (ctx_u64(ctx, CTX_FAULT_VADDR, &vaddr_at) || ctx_u64(ctx, CTX_FAULT_PC, &pc_at))
            goto out;
        memcpy(&vaddr, (const void *)(uintptr_t)vaddr_at, 8);
        if (vaddr != addr) {
            ret = 0;
            goto out;
        }
        memcpy(&pcv, (const void *)(uintptr_t)pc_at, 8);
        if (!(pc = PyLong_FromUnsignedLongLong(pcv)) || !(cid = PyObject_GetAttr(mm, s_context_id)))
            goto out;
        key = PyTuple_Pack(2, cid, pc);
        Py_DECREF(cid);
        if (!key)
            goto out;
        insn_b = PyDict_GetItemWithError(PyTuple_GET_ITEM(ctx, CTX_DISASM), key);
        Py_DECREF(key);
        /* Python: disasm.get(key) or self._insn(mm, pc) */
        if (!insn_b || !PyUnicode_Check(insn_b) || PyUnicode_GET_LENGTH(insn_b) == 0) {
            ret = PyErr_Occurred() ? -1 : 0;
            goto out;
        }
    } else {
        pc = Py_NewRef(Py_None);
    }
    insn = Py_NewRef(insn_b);

    if (!(pid = PyObject_GetAttr(task, s_pid)))
        goto out;
    {
        uint64_t at, n;
        if (ctx_u64(ctx, CTX_INSNS, &at))
            goto out;
        memcpy(&n, (const void *)(uintptr_t)at, 8);
        if (!(insns = PyLong_FromUnsignedLongLong(n)))
            goto out;
    }

    /* _FAULT, insns, pid, kind, detail, addr, access, user, pc, insn, signal,
     * major, pte, placement */
    {
        PyObject *vals[14] = {PyTuple_GET_ITEM(ctx, CTX_FAULT_TAG), insns, pid, kind, detail,
                              address, access, user, pc, insn, signal, major, pte, pl};
        Py_ssize_t n = PyList_GET_SIZE(pending);
        PyObject *items;
        /* grow once, then fill: PyList_SetSlice with an empty source reserves */
        items = PyTuple_New(14);
        if (!items)
            goto out;
        for (int i = 0; i < 14; i++)
            PyTuple_SET_ITEM(items, i, Py_NewRef(vals[i]));
        r = PyList_SetSlice(pending, n, n, items);
        Py_DECREF(items);
        if (r < 0)
            goto out;
    }
    ret = 1;
out:
    Py_XDECREF(kind);
    Py_XDECREF(detail);
    Py_XDECREF(pte);
    Py_XDECREF(mm);
    Py_XDECREF(pc);
    Py_XDECREF(pid);
    Py_XDECREF(insns);
    Py_XDECREF(pl);
    Py_XDECREF(insn);
    return ret;
}

static PyObject *record_fault(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *ctx, *pending;
    uint64_t batch;
    int r;
    (void)self;

    if (nargs != 1 + NARGS) {
        PyErr_Format(PyExc_TypeError, "record_fault takes %d arguments (%zd given)",
                     1 + NARGS, nargs);
        return NULL;
    }
    ctx = args[0];
    if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) != CTX_N) {
        PyErr_SetString(PyExc_TypeError, "record_fault: bad ctx");
        return NULL;
    }
    r = record(ctx, args + 1);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyObject_Vectorcall(PyTuple_GET_ITEM(ctx, CTX_SLOW), args + 1, NARGS, NULL);
    pending = PyTuple_GET_ITEM(ctx, CTX_PENDING);
    if (ctx_u64(ctx, CTX_BATCH, &batch))
        return NULL;
    if ((uint64_t)PyList_GET_SIZE(pending) >= batch)
        return PyObject_CallNoArgs(PyTuple_GET_ITEM(ctx, CTX_DRAIN));
    Py_RETURN_NONE;
}

/* ---- TLB-flush events ---------------------------------------------------- */
enum {
    FL_PENDING,      /* list: the flat records (the same list as CTX_PENDING) */
    FL_VMAS,         /* dict: the placement memo */
    FL_DISASM,       /* dict: the disassembly cache */
    FL_INSNS,        /* int: address of the native state's insns */
    FL_BATCH,        /* int: drain at this many items */
    FL_SLOW,         /* callable: the Python FaultTracer.tlb_flush */
    FL_DRAIN,        /* callable: FaultTracer._drain() */
    FL_MACHINE,      /* the Machine: its `task` is the running task */
    FL_OTHER_TAG,    /* int: the record tag of a non-fault event (_OTHER) */
    FL_PAGE,         /* str: "page", the kind the kernel passes */
    FL_RANGE,        /* str: "range" */
    FL_PAGE_NAME,    /* str: "flush.tlb_page", the event's kind */
    FL_RANGE_NAME,   /* str: "flush.tlb_range" */
    FL_N
};

/*
 * A page or range flush of the running task's mm whose start lies in the
 * mm's cached VMA (mmap_cache: what find_vma() answers without a search)
 * with a remembered placement, and no cached instruction to drop. Same
 * return convention as record().
 */
static int record_flush_common(PyObject *ctx, PyObject *const *a)
{
    PyObject *mm = a[0], *kind = a[1], *start_o = a[2], *end_o = a[3];
    PyObject *pending = PyTuple_GET_ITEM(ctx, FL_PENDING), *disasm = PyTuple_GET_ITEM(ctx, FL_DISASM);
    PyObject *name, *task = NULL, *task_mm = NULL, *tree = NULL, *vma = NULL, *pid = NULL,
             *insns = NULL, *length = NULL, *pl_b = Py_None, *cid = NULL;
    uint64_t start, end, at, n;
    int ret = -1, r;

    if (kind == PyTuple_GET_ITEM(ctx, FL_PAGE))
        name = PyTuple_GET_ITEM(ctx, FL_PAGE_NAME);
    else if (kind == PyTuple_GET_ITEM(ctx, FL_RANGE))
        name = PyTuple_GET_ITEM(ctx, FL_RANGE_NAME);
    else
        return 0; /* mm, icache, or an equal string that is another object */
    if (!PyList_Check(pending) || !PyDict_Check(disasm))
        return 0;
    if ((r = as_u64(start_o, &start)) != 1 || (r = as_u64(end_o, &end)) != 1)
        return r;

    /* a cached instruction in the flushed range: Python drops it */
    if (PyDict_GET_SIZE(disasm)) {
        Py_ssize_t pos = 0;
        PyObject *key, *val;
        uint64_t pc;
        if (!(cid = PyObject_GetAttr(mm, s_context_id)))
            return -1;
        while (PyDict_Next(disasm, &pos, &key, &val)) {
            if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2) {
                ret = 0;
                goto out;
            }
            r = PyObject_RichCompareBool(PyTuple_GET_ITEM(key, 0), cid, Py_EQ);
            if (r < 0)
                goto out;
            if (!r)
                continue;
            r = as_u64(PyTuple_GET_ITEM(key, 1), &pc);
            if (r != 1 || (start <= pc && pc < end)) {
                ret = r < 0 ? -1 : 0;
                goto out;
            }
        }
    }

    if (!(task = PyObject_GetAttr(PyTuple_GET_ITEM(ctx, FL_MACHINE), s_task)) ||
        !(task_mm = PyObject_GetAttr(task, s_mm)))
        goto out;
    if (task_mm != mm) {
        ret = 0; /* another task's mm: Python finds its owner */
        goto out;
    }
    if (!(tree = PyObject_GetAttr(mm, s_mm_rb)) || !(vma = PyObject_GetAttr(tree, s_mmap_cache)))
        goto out;
    if (vma == Py_None) {
        ret = 0;
        goto out;
    }
    r = placement(PyTuple_GET_ITEM(ctx, FL_VMAS), vma, mm, start, &pl_b);
    if (r != 1) {
        ret = r;
        goto out;
    }
    if (pl_b == Py_None) {
        ret = 0; /* start outside the cached VMA: find_vma() would search */
        goto out;
    }
    if (!(pid = PyObject_GetAttr(task, s_pid)) ||
        !(length = PyLong_FromUnsignedLongLong(end > start ? end - start : 0)))
        goto out;
    if (as_u64(PyTuple_GET_ITEM(ctx, FL_INSNS), &at) != 1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "record_flush: bad insns address");
        goto out;
    }
    memcpy(&n, (const void *)(uintptr_t)at, 8);
    if (!(insns = PyLong_FromUnsignedLongLong(n)))
        goto out;
    /* _OTHER, insns, pid, kind, addr, length, outcome, prot, flags, result,
     * role (None: placed by the placement), page, placement, None */
    {
        PyObject *items = PyTuple_New(14);
        PyObject *num0 = PyLong_FromLong(0), *minus1 = PyLong_FromLong(-1);
        if (!items || !num0 || !minus1) {
            Py_XDECREF(items);
            Py_XDECREF(num0);
            Py_XDECREF(minus1);
            goto out;
        }
        PyObject *vals[14] = {PyTuple_GET_ITEM(ctx, FL_OTHER_TAG), insns, pid, name, start_o,
                              length, s_empty, num0, num0, num0, Py_None, minus1, pl_b, Py_None};
        Py_ssize_t len = PyList_GET_SIZE(pending);
        for (int i = 0; i < 14; i++)
            PyTuple_SET_ITEM(items, i, Py_NewRef(vals[i]));
        Py_DECREF(num0);
        Py_DECREF(minus1);
        r = PyList_SetSlice(pending, len, len, items);
        Py_DECREF(items);
        if (r < 0)
            goto out;
    }
    ret = 1;
out:
    Py_XDECREF(cid);
    Py_XDECREF(task);
    Py_XDECREF(task_mm);
    Py_XDECREF(tree);
    Py_XDECREF(vma);
    Py_XDECREF(pid);
    Py_XDECREF(length);
    Py_XDECREF(insns);
    return ret;
}

static PyObject *record_flush(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *ctx, *pending;
    uint64_t batch;
    int r;
    (void)self;

    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "record_flush takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    ctx = args[0];
    if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) != FL_N) {
        PyErr_SetString(PyExc_TypeError, "record_flush: bad ctx");
        return NULL;
    }
    r = record_flush_common(ctx, args + 1);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyObject_Vectorcall(PyTuple_GET_ITEM(ctx, FL_SLOW), args + 1, 4, NULL);
    pending = PyTuple_GET_ITEM(ctx, FL_PENDING);
    if (as_u64(PyTuple_GET_ITEM(ctx, FL_BATCH), &batch) != 1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "record_flush: bad batch");
        return NULL;
    }
    if ((uint64_t)PyList_GET_SIZE(pending) >= batch)
        return PyObject_CallNoArgs(PyTuple_GET_ITEM(ctx, FL_DRAIN));
    Py_RETURN_NONE;
}

static PyMethodDef tracerec_methods[] = {
    {"record_fault", (PyCFunction)(void (*)(void))record_fault, METH_FASTCALL,
     "record_fault(ctx, task, address, access, vmf, vma, major, signal, user)\n"
     "FaultTracer.fault's record step in C; the Python method (ctx's slow path)\n"
     "records whatever this cannot."},
    {"record_flush", (PyCFunction)(void (*)(void))record_flush, METH_FASTCALL,
     "record_flush(ctx, mm, kind, start, end)\n"
     "FaultTracer.tlb_flush for a page or range flush in C; the Python method\n"
     "(ctx's slow path) handles whatever this cannot."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef tracerec_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_tracerec",
    .m_doc = "mmuemu fault tracer: the record step in C (see mmuemu.emu.tracing).",
    .m_size = -1,
    .m_methods = tracerec_methods,
};

PyMODINIT_FUNC PyInit__tracerec(void)
{
    static const struct {
        PyObject **slot;
        const char *name;
    } names[] = {
        {&s_mm, "mm"}, {&s_pid, "pid"}, {&s_kind, "kind"}, {&s_value, "_value_"},
        {&s_detail, "detail"}, {&s_pte_pa, "pte_pa"}, {&s_context_id, "context_id"},
        {&s_vm_start, "vm_start"}, {&s_vm_end, "vm_end"}, {&s_vm_flags, "vm_flags"},
        {&s_vm_ops, "vm_ops"}, {&s_vm_file, "vm_file"},
        {&s_vm_private_data, "vm_private_data"}, {&s_start_brk, "start_brk"},
        {&s_end_data, "end_data"}, {&s_empty, ""}, {&s_task, "task"}, {&s_mm_rb, "mm_rb"},
        {&s_mmap_cache, "mmap_cache"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!*names[i].slot && !(*names[i].slot = PyUnicode_InternFromString(names[i].name)))
            return NULL;
    }
    return PyModule_Create(&tracerec_module);
}
