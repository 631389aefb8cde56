/*
 * mmuemu native fast path: the page walk on Unicorn TLB fills, and
 * instruction counting per basic block.
 *
 * Built as the CPython extension module mmuemu.emu._fastpath (its module
 * object is empty); mmuemu/emu/native.py loads the same shared object with
 * ctypes and registers the callbacks below with libunicorn's uc_hook_add.
 *
 * mmuemu_walk() implements exactly the rules of the pure-Python reference
 * walker, mmuemu/hw/walker.py (read that module's docstring: it is the
 * specification); tests/emu/test_native.py checks them against each other.
 *
 * Only the handful of Unicorn types needed are declared here (ABI of Unicorn
 * 2.1.4's unicorn.h): the build must not depend on the unicorn package's
 * headers being importable.
 *
 * Threading: one state per emulated CPU, used only from the thread running
 * uc_emu_start (and from Python between runs).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MMUEMU_EXPORT __attribute__((visibility("default")))

/* ---- Unicorn 2.1.4 ABI (unicorn.h) ------------------------------------- */
typedef struct uc_struct uc_engine;     /* opaque */
typedef struct mmuemu_uc_tlb_entry {    /* struct uc_tlb_entry */
    uint64_t paddr;
    int perms;                          /* uc_prot: READ 1, WRITE 2, EXEC 4 */
} mmuemu_uc_tlb_entry;
#include "pte_bits.h"
#include "softtlb.h"

/* ---- the shared state (mirrored by MmuemuState in native.py) ----------- */
#define MMUEMU_STATE_VERSION 6u
#define MMUEMU_ARCH_X86_64 0u
#define MMUEMU_ARCH_ARM64 1u
#define MMUEMU_LEVELS 4
#define MMUEMU_NO_PTE UINT64_MAX        /* last_pte_pa when no entry was read */
#define MMUEMU_NO_FAULT UINT64_MAX      /* fault_vaddr outside the fault handler */
#define MMUEMU_COUNT_ERROR UINT32_MAX   /* count_block's "I failed" answer */
/* count_block's answer for a block it wants to see at every execution (it
 * holds instructions counted by kind, e.g. cache maintenance): not cached */
#define MMUEMU_UNCACHED_BLOCK (1u << 31)

typedef uint32_t (*mmuemu_count_block_fn)(uint64_t address, uint32_t size);
typedef int (*mmuemu_stop_fn)(uc_engine *uc);
typedef int (*mmuemu_ctl_fn)(uc_engine *uc, int control, ...);
typedef int (*mmuemu_reg_read_fn)(uc_engine *uc, int regid, void *value);

struct mmuemu_state {
    uint32_t version;           /* MMUEMU_STATE_VERSION, set by Python */
    uint32_t size;              /* sizeof(struct mmuemu_state), set by Python */
    uint8_t *phys;              /* guest physical memory, PA 0 .. phys_size-1 */
    uint64_t phys_size;
    uint64_t root;              /* CR3 / TTBR0 of the running address space */
    uint32_t arch;              /* 0 x86_64, 1 arm64 */
    uint32_t hw_af;             /* arm64: 1 = hardware AF/DBM update (HAFDBS) */
    /* fill and walk counters */
    uint64_t fills;             /* mmuemu_tlb_fill calls */
    uint64_t fills_resolved;
    uint64_t fills_faulted;
    uint64_t fills_by_access[3];/* read, write, fetch */
    uint64_t walks;             /* mmuemu_walk calls (fills + Python walks) */
    uint64_t walk_refs[MMUEMU_LEVELS]; /* table entries read, per level */
    uint64_t ad_updates;        /* entries written back by the walker */
    uint64_t last_pte_pa;       /* PA of the last entry the last walk read */
    /* instruction counting */
    uint64_t insns;
    uint64_t blocks;
    uint64_t insn_limit;        /* 0 = none; else run at most this many */
    uint32_t limit_hit;
    uint32_t count_error;       /* count_block returned MMUEMU_COUNT_ERROR */
    mmuemu_count_block_fn count_block; /* Python (ctypes) callback, or NULL */
    mmuemu_stop_fn stop_fn;     /* libunicorn's uc_emu_stop, or NULL */
    void *tab;                  /* struct block_slot[tab_cap] */
    uint64_t tab_cap;
    uint64_t tab_used;
    uint64_t block_misses;      /* count_block calls */
    /* the last block looked up (a loop's blocks repeat): size EMPTY_SIZE = none */
    uint64_t last_block_address;
    uint32_t last_block_size;
    uint32_t last_block_ninsns;
    /* growing Unicorn's soft TLB (softtlb.h); ctl NULL = never flush */
    struct softtlb_sizing sizing;
    mmuemu_ctl_fn ctl;          /* libunicorn uc_ctl */
    uint32_t ctl_flush;         /* UC_CTL_TLB_FLUSH | UC_CTL_IO_WRITE << 30 */
    uint32_t pad2;
    /* mmuemu_tlb_fill_faulting's page-fault handler, or NULL: a Python callable,
     * handler(vaddr, type), true = resolved (walk again), false = not resolved
     * (a signal, or an error that stopped emulation). Borrowed: NativeFastPath
     * holds the reference while it is set. */
    PyObject *fault_handler;
    /* what a fault tracer reads while the handler runs: the faulting address and
     * the guest pc, read once in C (reg_read NULL: not captured). fault_vaddr
     * is MMUEMU_NO_FAULT outside the handler, so a stale pc is never used. */
    mmuemu_reg_read_fn reg_read; /* libunicorn uc_reg_read, or NULL */
    uint32_t pc_reg;            /* UC_X86_REG_RIP / UC_ARM64_REG_PC */
    uint32_t pad3;
    uint64_t fault_vaddr;
    uint64_t fault_pc;
    /* a flush of Unicorn's TLB that the fault handler left to the refill of
     * the faulting page (see mmuemu_tlb_fill_faulting): flush_deferred is
     * set by the handler; the flush, if the refill fails, goes through
     * flush_ctl (NULL: the handler defers none) with flush_code */
    mmuemu_ctl_fn flush_ctl;
    uint32_t flush_code;
    uint32_t flush_deferred;
    uint64_t flushes_elided;    /* deferred flushes the refill made unnecessary */
};

/* ---- page-table bits ------------------------------------------------------ */

/**
 * mmuemu_walk - translate @va for a user-mode @access (16 read, 17 write,
 * 18 fetch) through the tables at s->root, as mmuemu/hw/walker.py:walk().
 * @pa:    out: page-frame physical address (when ok)
 * @perms: out: UC_PROT_* bits for the TLB entry (when ok)
 * @level: out: level where the walk stopped (3 = leaf)
 *
 * Counts walks, walk_refs[level] per entry read and ad_updates per entry
 * written back; sets last_pte_pa. Every entry address is checked against
 * phys_size. Return: 1 if the access is allowed, 0 on a fault.
 */
static inline __attribute__((always_inline))
int walk(struct mmuemu_state *restrict s, uint64_t va, int access, uint64_t *restrict pa,
         uint32_t *restrict perms, int *restrict level, const int x86)
{
    /* Locals and one exit, so the compiler keeps the walk in registers (the
     * out-parameters and the counters could otherwise alias the tables). */
    const int hw_flags = x86 || s->hw_af;
    const uint64_t limit = s->phys_size >= 8 ? s->phys_size - 8 : 0;
    uint8_t *const phys = s->phys;
    uint64_t table = s->root & ADDR_MASK;
    uint64_t last = MMUEMU_NO_PTE, out_pa = 0;
    uint32_t out_perms = 0;
    int lvl = 0, writable = 1, nx = 0, ok = 0;

    s->walks++;
    if (va >= (x86 ? X86_TASK_SIZE : A64_TASK_SIZE) || s->phys_size < 8)
        goto out;

#pragma GCC unroll 4
    for (; lvl < MMUEMU_LEVELS - 1; lvl++) {
        const uint64_t epa = table + 8u * pt_index(va, lvl);
        if (epa > limit)
            goto out;
        uint64_t e = rd64(phys + epa);
        s->walk_refs[lvl]++;
        last = epa;
        if (x86) {
            if (!(e & X86_P) || !(e & X86_US))
                goto out;
            if (!(e & X86_A)) {
                e |= X86_A;
                wr64(phys + epa, e);
                s->ad_updates++;
            }
            if (!(e & X86_RW))
                writable = 0;
            if (e & X86_NX)
                nx = 1;
        } else if ((e & 3) != A64_TABLE) {
            goto out;
        }
        table = e & ADDR_MASK;
    }

    {
        const uint64_t epa = table + 8u * pt_index(va, MMUEMU_LEVELS - 1);
        if (epa > limit)
            goto out;
        const uint64_t pte = rd64(phys + epa);
        s->walk_refs[MMUEMU_LEVELS - 1]++;
        last = epa;
        if ((access == UC_MEM_WRITE && !writable) || (access == UC_MEM_FETCH && nx))
            goto out;
        uint64_t n;
        uint32_t p;
        if (!(x86 ? x86_leaf(pte, access, &n, &p) : a64_leaf(pte, access, &n, &p)))
            goto out;
        if (n != pte) {
            if (!hw_flags)
                goto out;
            wr64(phys + epa, n);
            s->ad_updates++;
        }
        if (nx)
            p &= ~(uint32_t)UC_PROT_EXEC;
        if (!writable)
            p &= ~(uint32_t)UC_PROT_WRITE;
        out_pa = n & ADDR_MASK;
        out_perms = p;
        ok = 1;
    }
out:
    s->last_pte_pa = last;
    *level = lvl;
    *pa = out_pa;
    *perms = out_perms;
    return ok;
}

/* The walk compiled once per architecture (x86 is a constant in each copy). */
MMUEMU_EXPORT int mmuemu_walk(struct mmuemu_state *s, uint64_t va, int access,
                              uint64_t *pa, uint32_t *perms, int *level)
{
    if (s->arch == MMUEMU_ARCH_X86_64)
        return walk(s, va, access, pa, perms, level, 1);
    return walk(s, va, access, pa, perms, level, 0);
}

/* Flush Unicorn's soft TLB so that QEMU can grow it (softtlb.h). */
static __attribute__((noinline)) void grow_flush(struct mmuemu_state *s, uc_engine *uc)
{
    s->ctl(uc, (int)s->ctl_flush);
    s->sizing.grow_flushes++;
    softtlb_flushed(&s->sizing);
}

/**
 * mmuemu_tlb_fill - UC_HOOK_TLB_FILL callback; @user_data is the state.
 *
 * Resolves the miss from the page tables when the walk allows the access;
 * otherwise returns false so that the next fill hook (Python: the page
 * fault path) runs. Every resolved fill counts toward the soft-TLB sizing
 * policy (softtlb.h): a data fill may flush Unicorn's TLB before it
 * returns, a fetch fill leaves that to the next block hook.
 */
MMUEMU_EXPORT bool mmuemu_tlb_fill(uc_engine *uc, uint64_t vaddr, int type,
                                   mmuemu_uc_tlb_entry *result, void *user_data)
{
    struct mmuemu_state *s = user_data;
    uint64_t pa;
    uint32_t perms;
    int level;

    int ok;

    (void)uc;
    s->fills++;
    if (type >= UC_MEM_READ && type <= UC_MEM_FETCH)
        s->fills_by_access[type - UC_MEM_READ]++;
    if (s->arch == MMUEMU_ARCH_X86_64)
        ok = walk(s, vaddr, type, &pa, &perms, &level, 1);
    else
        ok = walk(s, vaddr, type, &pa, &perms, &level, 0);
    if (ok) {
        result->paddr = pa;
        result->perms = (int)perms;
        s->fills_resolved++;
        if (__builtin_expect(softtlb_filled(&s->sizing), 0) && s->ctl) {
            if (type != UC_MEM_FETCH && uc)
                grow_flush(s, uc);
            else
                s->sizing.pending = 1;
        }
        return true;
    }
    s->fills_faulted++;
    return false;
}

/*
 * Call the page-fault handler: handler(vaddr, type) with the GIL taken
 * (Unicorn's binding releases it for uc_emu_start), through vectorcall:
 * about a third of what a ctypes callback costs, which converts each
 * argument through its type descriptor and calls with a new tuple. An
 * exception is reported as unraisable and counts as "not resolved", as
 * ctypes did; the machine's handler catches its own and stops the run.
 */
static uint32_t call_fault_handler(PyObject *handler, uint64_t vaddr, uint32_t type)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *args[2] = {PyLong_FromUnsignedLongLong(vaddr), PyLong_FromUnsignedLong(type)};
    PyObject *ret = NULL;
    int resolved = 0;

    if (args[0] && args[1])
        ret = PyObject_Vectorcall(handler, args, 2, NULL);
    if (ret)
        resolved = PyObject_IsTrue(ret);
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(handler);
        resolved = 0;
    }
    Py_XDECREF(ret);
    Py_XDECREF(args[0]);
    Py_XDECREF(args[1]);
    PyGILState_Release(gil);
    return resolved > 0;
}

/**
 * mmuemu_tlb_fill_faulting - UC_HOOK_TLB_FILL callback: mmuemu_tlb_fill,
 * then, when the walk faults, s->fault_handler (the page-fault path) and, if that
 * resolved the fault, mmuemu_tlb_fill again.
 *
 * The same calls, in the same order and with the same counting, as three
 * hooks registered in a row (walk, Python fault hook, walk), without the
 * Unicorn binding's per-call Python wrapper: one Python call with two
 * integer arguments per page fault. With s->reg_read set, the guest pc is
 * read first and published, with the address, in fault_pc / fault_vaddr
 * for the duration of the handler (a tracer's record of the fault).
 *
 * The handler's flush of the faulting page itself (ptep_clear_flush on a
 * COW or a write-protect fault) need not flush Unicorn's soft TLB: when the
 * refill succeeds, Unicorn's tlb_set_page() writes the page's new entry
 * over its old one in the same slot and drops the page from the victim TLB
 * (accel/tcg/cputlb.c), so nothing stale of that page is left, and the rest
 * of the table stays warm. The handler (Machine._on_fault, through
 * UnicornTlb) defers such a flush by setting flush_deferred; it is made here
 * only if the fault was not resolved or the refill failed. The kernel
 * model's own TLB model still sees every flush.
 */
MMUEMU_EXPORT bool mmuemu_tlb_fill_faulting(uc_engine *uc, uint64_t vaddr, int type,
                                            mmuemu_uc_tlb_entry *result, void *user_data)
{
    struct mmuemu_state *s = user_data;
    uint32_t resolved;
    bool ok;

    if (mmuemu_tlb_fill(uc, vaddr, type, result, user_data))
        return true;
    if (!s->fault_handler)
        return false;
    if (s->reg_read && s->reg_read(uc, (int)s->pc_reg, &s->fault_pc) == 0)
        s->fault_vaddr = vaddr;
    resolved = call_fault_handler(s->fault_handler, vaddr, (uint32_t)type);
    s->fault_vaddr = MMUEMU_NO_FAULT;
    ok = resolved && mmuemu_tlb_fill(uc, vaddr, type, result, user_data);
    if (__builtin_expect(s->flush_deferred, 0)) {
        s->flush_deferred = 0;
        if (ok)
            s->flushes_elided++; /* Unicorn writes the new entry over the old */
        else if (s->flush_ctl && s->flush_ctl(uc, (int)s->flush_code) == 0)
            softtlb_flushed(&s->sizing);
    }
    return ok;
}

/* ---- instruction counting per basic block ------------------------------
 * An open-addressing (linear probing) table: (address, size) -> number of
 * instructions. An empty slot has size == EMPTY_SIZE (no block is 4 GiB). */
#define EMPTY_SIZE UINT32_MAX
#define TAB_MIN_CAP 1024u

struct block_slot {
    uint64_t address;
    uint32_t size;
    uint32_t ninsns;
};

/* Fibonacci hashing: the top bits of one multiply index a table of @cap
 * (a power of two) slots. One multiply: this runs on every executed block. */
static inline uint64_t slot_index(uint64_t address, uint32_t size, uint64_t cap)
{
    const uint64_t x = (address ^ ((uint64_t)size << 40)) * 0x9E3779B97F4A7C15ull;
    return x >> (64 - __builtin_ctzll(cap));
}

static struct block_slot *tab_alloc(uint64_t cap)
{
    struct block_slot *t = malloc(cap * sizeof *t);
    if (t)
        memset(t, 0xFF, cap * sizeof *t);   /* size = EMPTY_SIZE everywhere */
    return t;
}

/* Insert without checking the load; the key must not be present. */
static void tab_put(struct block_slot *t, uint64_t cap, uint64_t address,
                    uint32_t size, uint32_t ninsns)
{
    uint64_t i = slot_index(address, size, cap);
    while (t[i].size != EMPTY_SIZE)
        i = (i + 1) & (cap - 1);
    t[i].address = address;
    t[i].size = size;
    t[i].ninsns = ninsns;
}

/* Make room for one more entry (grow at 70% load). 0 if out of memory. */
static int tab_reserve(struct mmuemu_state *s)
{
    if (s->tab && (s->tab_used + 1) * 10 <= s->tab_cap * 7)
        return 1;
    uint64_t cap = s->tab ? s->tab_cap * 2 : TAB_MIN_CAP;
    struct block_slot *t = tab_alloc(cap);
    if (!t)
        return 0;
    struct block_slot *old = s->tab;
    if (old) {
        for (uint64_t i = 0; i < s->tab_cap; i++)
            if (old[i].size != EMPTY_SIZE)
                tab_put(t, cap, old[i].address, old[i].size, old[i].ninsns);
        free(old);
    }
    s->tab = t;
    s->tab_cap = cap;
    return 1;
}

static void stop(struct mmuemu_state *s, uc_engine *uc)
{
    if (s->stop_fn)
        s->stop_fn(uc);
}

/* Everything but a repeat of the last block: the table, the count callback. */
static __attribute__((noinline))
void block_slow(uc_engine *uc, uint64_t address, uint32_t size, struct mmuemu_state *s)
{
    struct block_slot *t = s->tab;
    uint32_t n = 0;
    int found = 0;

    if (t && size != EMPTY_SIZE) {
        const uint64_t mask = s->tab_cap - 1;
        for (uint64_t i = slot_index(address, size, s->tab_cap); t[i].size != EMPTY_SIZE;
             i = (i + 1) & mask) {
            if (t[i].address == address && t[i].size == size) {
                n = t[i].ninsns;
                found = 1;
                s->last_block_address = address;
                s->last_block_size = size;
                s->last_block_ninsns = n;
                break;
            }
        }
    }
    if (!found && s->count_block) {
        s->block_misses++;
        n = s->count_block(address, size);
        if (n == MMUEMU_COUNT_ERROR) {
            s->count_error = 1;
            stop(s, uc);
            return;
        }
        if (n & MMUEMU_UNCACHED_BLOCK)
            n &= ~MMUEMU_UNCACHED_BLOCK;    /* asked again next time */
        else if (size != EMPTY_SIZE && tab_reserve(s)) {
            tab_put(s->tab, s->tab_cap, address, size, n);
            s->tab_used++;
        }
    }
    if (s->insn_limit != 0 && s->insns + n > s->insn_limit) {
        s->limit_hit = 1;
        if (s->stop_fn) {
            stop(s, uc);
            return;
        }
    }
    s->insns += n;
    s->blocks++;
}

/**
 * mmuemu_block - UC_HOOK_BLOCK callback; @user_data is the state.
 *
 * Adds the block's instruction count (looked up, or asked of count_block
 * once per (address, size); at every execution when count_block flagged it
 * MMUEMU_UNCACHED_BLOCK) to insns and blocks.
 *
 * Instruction limit: when insn_limit != 0 and this block would take insns
 * past it, the block is not counted, limit_hit is set and stop_fn is called.
 * uc_emu_stop() from a block hook makes Unicorn leave the translation block
 * before its first instruction (measured on x86-64 and arm64), so insns stays
 * the exact number of instructions executed: at most insn_limit, whole
 * blocks. Without a stop_fn the block runs, is counted, and limit_hit is set.
 * A count_block failure (MMUEMU_COUNT_ERROR) sets count_error and stops the
 * same way.
 */
MMUEMU_EXPORT void mmuemu_block(uc_engine *uc, uint64_t address, uint32_t size,
                                void *user_data)
{
    struct mmuemu_state *s = user_data;

    if (__builtin_expect(s->sizing.pending, 0) && s->ctl && uc)
        grow_flush(s, uc);   /* asked for by a fetch fill (softtlb.h) */
    /* A loop runs the same block again and again: one compare, no hashing.
     * (The cache never holds EMPTY_SIZE blocks; it starts as EMPTY_SIZE.) */
    if (__builtin_expect(address == s->last_block_address && size == s->last_block_size
                         && size != EMPTY_SIZE, 1)) {
        const uint32_t n = s->last_block_ninsns;
        if (s->insn_limit == 0 || s->insns + n <= s->insn_limit) {
            s->insns += n;
            s->blocks++;
            return;
        }
    }
    block_slow(uc, address, size, s);
}

/** mmuemu_uc_flushed - Unicorn's soft TLB was flushed by someone else (the
 * kernel model's flush requests): the sizing policy starts counting again. */
MMUEMU_EXPORT void mmuemu_uc_flushed(struct mmuemu_state *s)
{
    softtlb_flushed(&s->sizing);
}

/** mmuemu_flush_uc_tlb - the kernel model's flush: uc_ctl(uc, code) through
 * @ctl, then mmuemu_uc_flushed(); one foreign call instead of two on every
 * COW fault. Returns uc_ctl's status (the flush counts only if it worked). */
MMUEMU_EXPORT int mmuemu_flush_uc_tlb(struct mmuemu_state *s, mmuemu_ctl_fn ctl,
                                      uc_engine *uc, int code)
{
    int status = ctl(uc, code);
    if (status == 0)
        softtlb_flushed(&s->sizing);
    return status;
}

/** mmuemu_block_table_clear - forget every block's count (code changed). */
MMUEMU_EXPORT void mmuemu_block_table_clear(struct mmuemu_state *s)
{
    if (s->tab)
        memset(s->tab, 0xFF, s->tab_cap * sizeof(struct block_slot));
    s->tab_used = 0;
    s->last_block_size = EMPTY_SIZE;
}

/** mmuemu_state_free_tables - release the block table (the state itself is
 * owned by the caller). */
MMUEMU_EXPORT void mmuemu_state_free_tables(struct mmuemu_state *s)
{
    free(s->tab);
    s->tab = NULL;
    s->tab_cap = 0;
    s->tab_used = 0;
    s->last_block_size = EMPTY_SIZE;
}

/** mmuemu_state_layout - version and sizeof of struct mmuemu_state, so the
 * ctypes mirror can check itself against the compiled library. */
MMUEMU_EXPORT uint32_t mmuemu_state_layout(uint32_t *size)
{
    *size = (uint32_t)sizeof(struct mmuemu_state);
    return MMUEMU_STATE_VERSION;
}

/** mmuemu_addr_mask - the output-address mask the walker uses. */
MMUEMU_EXPORT uint64_t mmuemu_addr_mask(void)
{
    return ADDR_MASK;
}

/** mmuemu_state_offset - offsetof a field by index (0 .. n-1), for the
 * layout test; UINT32_MAX past the end. */
MMUEMU_EXPORT uint32_t mmuemu_state_offset(uint32_t field)
{
    static const uint32_t offs[] = {
        offsetof(struct mmuemu_state, version),
        offsetof(struct mmuemu_state, size),
        offsetof(struct mmuemu_state, phys),
        offsetof(struct mmuemu_state, phys_size),
        offsetof(struct mmuemu_state, root),
        offsetof(struct mmuemu_state, arch),
        offsetof(struct mmuemu_state, hw_af),
        offsetof(struct mmuemu_state, fills),
        offsetof(struct mmuemu_state, fills_resolved),
        offsetof(struct mmuemu_state, fills_faulted),
        offsetof(struct mmuemu_state, fills_by_access),
        offsetof(struct mmuemu_state, walks),
        offsetof(struct mmuemu_state, walk_refs),
        offsetof(struct mmuemu_state, ad_updates),
        offsetof(struct mmuemu_state, last_pte_pa),
        offsetof(struct mmuemu_state, insns),
        offsetof(struct mmuemu_state, blocks),
        offsetof(struct mmuemu_state, insn_limit),
        offsetof(struct mmuemu_state, limit_hit),
        offsetof(struct mmuemu_state, count_error),
        offsetof(struct mmuemu_state, count_block),
        offsetof(struct mmuemu_state, stop_fn),
        offsetof(struct mmuemu_state, tab),
        offsetof(struct mmuemu_state, tab_cap),
        offsetof(struct mmuemu_state, tab_used),
        offsetof(struct mmuemu_state, block_misses),
        offsetof(struct mmuemu_state, last_block_address),
        offsetof(struct mmuemu_state, last_block_size),
        offsetof(struct mmuemu_state, last_block_ninsns),
        offsetof(struct mmuemu_state, sizing),
        offsetof(struct mmuemu_state, ctl),
        offsetof(struct mmuemu_state, ctl_flush),
        offsetof(struct mmuemu_state, pad2),
        offsetof(struct mmuemu_state, fault_handler),
        offsetof(struct mmuemu_state, reg_read),
        offsetof(struct mmuemu_state, pc_reg),
        offsetof(struct mmuemu_state, pad3),
        offsetof(struct mmuemu_state, fault_vaddr),
        offsetof(struct mmuemu_state, fault_pc),
        offsetof(struct mmuemu_state, flush_ctl),
        offsetof(struct mmuemu_state, flush_code),
        offsetof(struct mmuemu_state, flush_deferred),
        offsetof(struct mmuemu_state, flushes_elided),
    };
    return field < sizeof offs / sizeof offs[0] ? offs[field] : UINT32_MAX;
}

/* ---- the (empty) Python module ------------------------------------------- */
static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastpath",
    .m_doc = "mmuemu native fast path; the C functions are reached through ctypes "
             "(see mmuemu.emu.native).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    return PyModule_Create(&fastpath_module);
}
