/*
 * mmuemu native exact mode: the architected TLB hierarchy, the page-walk
 * caches and the walk on a miss, observing every guest memory access.
 *
 * Built as the CPython extension module mmuemu.emu._exact (its module object
 * is empty); mmuemu/emu/exact.py loads the same shared object with ctypes and
 * registers the hooks below with libunicorn's uc_hook_add.
 *
 * Specification: mmuemu/hw/tlb.py (SetAssocTlb, TlbHierarchy, MmuModel, the
 * TlbiOp scopes) and mmuemu/hw/pwc.py (walk caches, walk_cached). Read their
 * docstrings; tests/emu/test_exact.py feeds the same random access and
 * invalidation sequences to both and compares every counter and every way.
 *
 * The model is an observer. In UC_TLB_VIRTUAL mode Unicorn's own soft TLB
 * still translates; this code keeps the architected TLB state beside it:
 *
 *   - data accesses: a UC_HOOK_MEM_READ|UC_HOOK_MEM_WRITE callback, one
 *     lookup per access (plus one for the second page of an access that
 *     crosses a page; Unicorn reports such an access once);
 *   - instruction fetches: a UC_HOOK_BLOCK callback, one iTLB lookup for the
 *     page of the block's first byte and one per further page it spans.
 *
 * Recovering the virtual address. Unicorn 2.1.4 passes memory hooks the
 * *physical* address in UC_TLB_VIRTUAL mode, and one frame may be mapped at
 * many virtual pages (the zero page above all). So the machine maps guest RAM
 * into Unicorn's physical space several times ("windows": window w holds the
 * same host memory at w << window_shift), and every TLB fill goes through
 * mmuemu_exact_alias(), which hands the filled virtual page a window in which
 * no other virtual page currently uses that frame, and records the owner.
 * The memory hook maps (window, frame) back to the virtual page. Owners are
 * valid for one generation: the machine flushes Unicorn's soft TLB whenever
 * the kernel flushes, and calls mmuemu_exact_uc_flushed() to start a new
 * generation. When every window of a frame is taken, a data fill flushes
 * Unicorn's TLB itself (that is safe inside a data fill); a fetch fill may
 * not (it derails Unicorn's code lookup), so it takes the last window and the
 * flush happens at the next block hook, which runs before any data access
 * of the block being fetched (steals counts those). The soft-TLB sizing
 * policy (softtlb.h) flushes the same way, in data fills or at the next
 * block hook, and starts a new generation like any other flush; the fast
 * path's own policy stays off in exact mode (fp_fill never flushes).
 *
 * Unicorn's state sync. Before it calls any UC_HOOK_MEM_* callback, Unicorn
 * 2.1.4 (load_helper / store_helper in qemu/accel/tcg/cputlb.c) runs
 * cpu_restore_state() -- a search of the TB tree by host PC (tb_tc_cmp,
 * g_tree_lookup) and a decode of the TB's per-instruction data -- so that a
 * hook could read an exact PC. It does so for every access, whatever the
 * hook type (READ, WRITE, READ_AFTER), address range or number of hooks, and
 * whatever the hook does; it skips the sync only while the private flag
 * uc_struct.skip_sync_pc_on_exit is set (normally by a PC write from a hook).
 * That sync was a third of exact mode's time on small working sets. These
 * hooks read no CPU state, so the block hook sets the flag at every block
 * start (skip_sync_off: its offset, found by exact.py probing a scratch
 * engine; 0 leaves Unicorn's behaviour alone). It only changes what an exit
 * through check_exit_request restores, and every exit the machine causes is
 * either at a block start (the instruction limit: the PC was just synced
 * for the block hook), at a syscall (synced by the translator), or follows
 * a TLB fill (which syncs unconditionally) or an exception (which restores).
 * Unicorn clears the flag at every such exit and at uc_emu_start.
 *
 * The walk after an architected miss reads the tables in guest physical
 * memory and never writes them: the fill path has already set accessed and
 * dirty bits for the same access (see mmuemu/hw/pwc.py).
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
    int perms;
} mmuemu_uc_tlb_entry;
#include "pte_bits.h"
#include "softtlb.h"

typedef bool (*exact_fill_fn)(uc_engine *uc, uint64_t vaddr, int type,
                              mmuemu_uc_tlb_entry *result, void *user_data);
typedef int (*exact_ctl_fn)(uc_engine *uc, int control, ...);

/* ---- the shared state (mirrored in mmuemu/emu/exact.py) ---------------- */
#define EXACT_STATE_VERSION 3u
#define EXACT_ARCH_X86_64 0u
#define EXACT_ARCH_ARM64 1u
#define LEVELS 4
#define CACHED_LEVELS (LEVELS - 1)
enum { TLB_L1I = 0, TLB_L1D = 1, TLB_L2 = 2, NTLBS = 3 };
enum { OUT_L1_HIT = 0, OUT_L2_HIT = 1, OUT_WALK = 2, OUT_FAULT = 3 };

/* xc_entry.flags */
#define XC_VALID    0x01u
#define XC_GLOBAL   0x02u   /* TLB entry: global */
#define XC_WRITABLE 0x04u   /* walk-cache entry: R/W ANDed down to it */
#define XC_NX       0x08u   /* walk-cache entry: XD ORed down to it */
#define XC_PERM_SHIFT 4     /* TLB entry: UC_PROT_* bits at 4..6 */

/* One way of a TLB or walk cache (its tag is in xc_cache.tags). */
struct xc_entry {
    uint64_t data;      /* walk cache: next-level table PA */
    uint32_t asid;
    uint32_t flags;
    uint32_t prev;      /* LRU list of the set's valid ways: towards the MRU */
    uint32_t next;      /* ... towards the LRU; NIL at the ends */
};

/* Per set: the LRU list's ends. */
struct xc_set {
    uint32_t head;      /* most recently used valid way, or NIL */
    uint32_t tail;      /* least recently used valid way, or NIL */
};

/*
 * One TLB level, or one walk-cache level (sets == 1, LRU). ways == 0: absent.
 * Replacement state: LRU keeps the valid ways of each set in a list ordered
 * by last use (the Python reference's clock stamps give the same order);
 * PLRU keeps each set's MRU bits in a bitmask. Both keep a bitmask of valid
 * ways, so "the first invalid way" is a count-trailing-zeros.
 */
struct xc_cache {
    uint32_t sets;
    uint32_t ways;
    uint32_t plru;      /* 0 LRU, 1 bit-PLRU */
    uint32_t mru;       /* index of the most recently touched entry */
    uint32_t words;     /* 64-bit words per set in the bitmasks */
    uint32_t index_bits; /* log2 of the tag index's slots per set; 0: no index */
    uint64_t hits;
    uint64_t misses;
    uint64_t invalidated;
    struct xc_entry *e; /* sets * ways, set-major */
    uint64_t *tags;     /* sets * ways: vpn (TLB) or va >> prefix_shift(level)
                           (walk cache); NO_TAG for an invalid way. Apart from
                           the entries, so a scan reads 8 bytes per way; a
                           wide TLB's tag index follows them (tag_index) */
    struct xc_set *set; /* sets */
    uint64_t *valid;    /* sets * words */
    uint64_t *mrubits;  /* sets * words (PLRU) */
};

struct exact_state {
    uint32_t version;           /* EXACT_STATE_VERSION, set by Python */
    uint32_t size;              /* sizeof(struct exact_state), set by Python */
    uint8_t *phys;              /* guest physical memory, PA 0 .. phys_size-1 */
    uint64_t phys_size;
    uint64_t root;              /* CR3 / TTBR0 of the running address space */
    uint32_t arch;              /* 0 x86_64, 1 arm64 */
    uint32_t asid;              /* current ASID / PCID */
    struct xc_cache tlb[NTLBS]; /* l1i, l1d, l2 */
    struct xc_cache pwc[CACHED_LEVELS];
    uint64_t walks;
    uint64_t walk_refs[LEVELS];
    uint64_t pwc_hits[CACHED_LEVELS];
    uint64_t walk_faults;
    uint64_t lookups[3];        /* accesses looked up: read, write, fetch */
    uint64_t outcomes[4];       /* L1 hit, L2 hit, walk, walk fault */
    /* PA -> VA recovery */
    uint64_t *owner;            /* [nwindows * nframes]: gen << 40 | (vpn + 1) */
    uint64_t nframes;
    uint32_t nwindows;
    uint32_t window_shift;
    uint64_t gen;
    uint32_t pending_flush;     /* a fetch fill stole a window: flush at block start */
    uint32_t pad0;
    uint64_t alias_fills;       /* fills given a window other than 0 */
    uint64_t uc_flushes;        /* Unicorn soft-TLB flushes done here */
    uint64_t steals;
    uint64_t unknown;           /* hook addresses that mapped to no owner */
    /* chaining */
    exact_fill_fn fp_fill;      /* fastpath.c mmuemu_tlb_fill */
    void *fp_state;             /* its struct mmuemu_state */
    exact_ctl_fn ctl;           /* libunicorn uc_ctl */
    uint32_t ctl_flush;         /* UC_CTL_TLB_FLUSH | UC_CTL_IO_WRITE << 30 */
    uint32_t skip_sync_off;     /* offsetof(uc_struct, skip_sync_pc_on_exit), or 0 */
    struct softtlb_sizing sizing; /* growing Unicorn's soft TLB (softtlb.h) */
};

#define GEN_SHIFT 40
#define GEN_MAX ((1ull << 24) - 1)
#define OWNER_VPN_MASK ((1ull << GEN_SHIFT) - 1)

static inline int prefix_shift(int level)
{
    return 39 - 9 * level;
}

/* ---- set-associative caches ----------------------------------------------- */
#define NIL UINT32_MAX
#define NO_TAG UINT64_MAX   /* no vpn or prefix is this large */

/* The first way >= @from of @n whose tag is @tag, or NIL. */
static inline uint32_t find_tag(const uint64_t *t, uint32_t n, uint64_t tag, uint32_t from)
{
    uint32_t w = from;
    for (; w + 4 <= n; w += 4)
        if ((t[w] == tag) | (t[w + 1] == tag) | (t[w + 2] == tag) | (t[w + 3] == tag))
            break;
    for (; w < n; w++)
        if (t[w] == tag)
            return w;
    return NIL;
}

static inline uint64_t set_of(const struct xc_cache *c, uint64_t tag)
{
    const uint64_t sets = c->sets;
    if (sets == 1)
        return 0;
    if ((sets & (sets - 1)) == 0)
        return tag & (sets - 1);
    return tag % sets;
}

/* Bits of word i of a set's bitmask that are ways. */
static inline uint64_t way_mask(const struct xc_cache *c, uint32_t i)
{
    const uint32_t left = c->ways - 64 * i;
    return left >= 64 ? ~0ull : (1ull << left) - 1;
}

static inline void bit_set(uint64_t *m, uint32_t w) { m[w >> 6] |= 1ull << (w & 63); }
static inline void bit_clear(uint64_t *m, uint32_t w) { m[w >> 6] &= ~(1ull << (w & 63)); }

/* The first way whose bit is clear in @m, or NIL. */
static inline uint32_t first_clear(const struct xc_cache *c, const uint64_t *m)
{
    for (uint32_t i = 0; i < c->words; i++) {
        const uint64_t free = ~m[i] & way_mask(c, i);
        if (free)
            return 64 * i + (uint32_t)__builtin_ctzll(free);
    }
    return NIL;
}

static inline void lru_unlink(struct xc_cache *c, uint64_t set, uint32_t w)
{
    struct xc_entry *e = c->e + set * c->ways;
    struct xc_set *ends = &c->set[set];
    const uint32_t p = e[w].prev, n = e[w].next;
    if (p != NIL)
        e[p].next = n;
    else
        ends->head = n;
    if (n != NIL)
        e[n].prev = p;
    else
        ends->tail = p;
}

static inline void lru_push_front(struct xc_cache *c, uint64_t set, uint32_t w)
{
    struct xc_entry *e = c->e + set * c->ways;
    struct xc_set *ends = &c->set[set];
    e[w].prev = NIL;
    e[w].next = ends->head;
    if (ends->head != NIL)
        e[ends->head].prev = w;
    else
        ends->tail = w;
    ends->head = w;
}

/* Make way @w of @set (valid already, or just made valid: @was_valid) the MRU. */
static inline void touch(struct xc_cache *c, uint64_t set, uint32_t w, int was_valid)
{
    c->mru = (uint32_t)(set * c->ways + w);
    if (!c->plru) {
        if (was_valid) {
            if (c->set[set].head == w)
                return;
            lru_unlink(c, set, w);
        }
        lru_push_front(c, set, w);
        return;
    }
    uint64_t *m = c->mrubits + set * c->words;
    bit_set(m, w);
    for (uint32_t i = 0; i < c->words; i++)
        if ((m[i] & way_mask(c, i)) != way_mask(c, i))
            return;
    memset(m, 0, c->words * sizeof *m);
    bit_set(m, w);
}

/* The way a fill into a full or partly empty @set takes. */
static inline uint32_t victim(const struct xc_cache *c, uint64_t set)
{
    const uint32_t w = first_clear(c, c->valid + set * c->words);
    if (w != NIL)
        return w;
    if (c->plru) {
        const uint32_t z = first_clear(c, c->mrubits + set * c->words);
        return z != NIL ? z : 0;   /* touch() never leaves every bit set */
    }
    return c->set[set].tail;
}

static inline int tlb_asid_ok(const struct xc_entry *e, uint32_t asid)
{
    return (e->flags & XC_GLOBAL) || e->asid == asid;
}

/*
 * The tag index of a wide TLB (INDEX_MIN_WAYS ways or more: Neoverse N1's
 * 48-way fully associative L1 TLBs). A scan of a set's tags costs a compare
 * per way, and a cyclic working set just over the capacity misses in L1 on
 * every access, so every lookup scanned all 48. The index is, per set, an
 * open-addressing table of 1 << index_bits way numbers (NIL: empty slot), at
 * least twice the ways, keyed by a multiplicative hash of the tag, with
 * linear probing and backward-shift deletion. It holds exactly the valid
 * ways, so a hit or a miss is settled in about two probes. It only finds
 * ways faster: which way matches, and every replacement decision, are the
 * scan's. Walk caches are not indexed (they are small, and pwc_insert writes
 * its tags directly). Stored after the tags, in the same allocation; every
 * change of an indexed cache's tag goes through tlb_insert() or drop().
 */
#define INDEX_MIN_WAYS 16

static inline uint32_t *tag_index(const struct xc_cache *c, uint64_t set)
{
    return (uint32_t *)(c->tags + (size_t)c->sets * c->ways) + (set << c->index_bits);
}

static inline uint32_t index_home(const struct xc_cache *c, uint64_t tag)
{
    return (uint32_t)((tag * 0x9E3779B97F4A7C15ull) >> (64 - c->index_bits));
}

static inline void index_add(struct xc_cache *c, uint64_t set, uint32_t w, uint64_t tag)
{
    uint32_t *t = tag_index(c, set);
    const uint32_t mask = (1u << c->index_bits) - 1;
    uint32_t i = index_home(c, tag);
    while (t[i] != NIL)
        i = (i + 1) & mask;
    t[i] = w;
}

/* Remove way @w, whose tag is @tag, from @set's index (it must be there). */
static void index_del(struct xc_cache *c, uint64_t set, uint32_t w, uint64_t tag)
{
    uint32_t *t = tag_index(c, set);
    const uint64_t *tags = c->tags + set * c->ways;
    const uint32_t mask = (1u << c->index_bits) - 1;
    uint32_t hole = index_home(c, tag);
    while (t[hole] != w)
        hole = (hole + 1) & mask;
    /* Backward shift: a later slot of the same run moves into the hole
     * unless its home lies cyclically in (hole, j]. */
    for (uint32_t j = (hole + 1) & mask; t[j] != NIL; j = (j + 1) & mask) {
        const uint32_t home = index_home(c, tags[t[j]]);
        const int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            t[hole] = t[j];
            hole = j;
        }
    }
    t[hole] = NIL;
}

/* The way of @set whose tag is @vpn and whose ASID fits, by the index, or NIL. */
static inline uint32_t index_find(const struct xc_cache *c, uint64_t set, uint64_t vpn,
                                  uint32_t asid)
{
    const uint32_t *t = tag_index(c, set);
    const uint64_t *tags = c->tags + set * c->ways;
    const struct xc_entry *e = c->e + set * c->ways;
    const uint32_t mask = (1u << c->index_bits) - 1;
    for (uint32_t i = index_home(c, vpn); t[i] != NIL; i = (i + 1) & mask)
        if (tags[t[i]] == vpn && tlb_asid_ok(&e[t[i]], asid))
            return t[i];
    return NIL;
}

/* Remove way @w of @set (counted as an invalidation if @count). */
static inline void drop(struct xc_cache *c, uint64_t set, uint32_t w, int count)
{
    struct xc_entry *e = c->e + set * c->ways + w;
    e->flags = 0;
    if (c->index_bits)
        index_del(c, set, w, c->tags[set * c->ways + w]);
    c->tags[set * c->ways + w] = NO_TAG;
    bit_clear(c->valid + set * c->words, w);
    if (c->plru)
        bit_clear(c->mrubits + set * c->words, w);
    else
        lru_unlink(c, set, w);
    if (count)
        c->invalidated++;
}

/*
 * SetAssocTlb.lookup: 1 on a hit (*flags, *e_asid: the entry's). On a miss,
 * *match is the way of a matching entry that lacked the permission, or NIL:
 * the fill that follows replaces it (tlb_insert's hint). At most one way of
 * a set matches (see tlb_insert), so the most recently touched entry can be
 * checked first; a hit there needs no replacement update (it is the MRU).
 */
/* (always inline: gcc -O2 kept it out of line for do_access's two calls) */
static inline __attribute__((always_inline)) int
tlb_lookup(struct xc_cache *c, uint64_t vpn, uint32_t asid, uint32_t need,
           uint32_t *flags, uint32_t *e_asid, uint32_t *match)
{
    const uint64_t set = set_of(c, vpn);
    struct xc_entry *e = c->e + set * c->ways;
    const uint64_t *tags = c->tags + set * c->ways;
    uint32_t w;
    if (c->tags[c->mru] == vpn && tlb_asid_ok(&c->e[c->mru], asid)) {
        w = (uint32_t)(c->mru - set * c->ways);
    } else if (c->index_bits) {
        w = index_find(c, set, vpn, asid);
        if (w == NIL) {
            c->misses++;
            *match = NIL;
            return 0;
        }
    } else {
        for (w = find_tag(tags, c->ways, vpn, 0); w != NIL; w = find_tag(tags, c->ways, vpn, w + 1))
            if (tlb_asid_ok(&e[w], asid))
                break;
        if (w == NIL) {
            c->misses++;
            *match = NIL;
            return 0;
        }
    }
    if (((e[w].flags >> XC_PERM_SHIFT) & need) != need) {
        c->misses++;
        *match = w;
        return 0;
    }
    touch(c, set, w, 1);
    c->hits++;
    *flags = e[w].flags;
    *e_asid = e[w].asid;
    return 1;
}

/*
 * SetAssocTlb.insert: replace the matching entry in place (a global fill
 * also drops the page's other entries); else take the victim way. @match is
 * tlb_lookup's hint for a non-global fill of the same (vpn, asid), made
 * before anything else changed this cache.
 */
static void tlb_insert(struct xc_cache *c, uint64_t vpn, uint32_t asid, uint32_t flags,
                       uint32_t match)
{
    const uint64_t set = set_of(c, vpn);
    struct xc_entry *e = c->e + set * c->ways;
    uint64_t *tags = c->tags + set * c->ways;
    uint32_t slot = match;
    if (flags & XC_GLOBAL) {
        slot = NIL;
        for (uint32_t w = 0; w < c->ways; w++) {
            if (tags[w] == vpn) {
                if (slot == NIL)
                    slot = w;
                else
                    drop(c, set, w, 0);   /* superseded, not invalidated */
            }
        }
    }
    int was_valid = slot != NIL;
    if (slot == NIL) {
        slot = victim(c, set);
        was_valid = (e[slot].flags & XC_VALID) != 0;
    }
    if (tags[slot] != vpn) {    /* (an invalid way's tag is NO_TAG) */
        if (c->index_bits) {
            if (tags[slot] != NO_TAG)
                index_del(c, set, slot, tags[slot]);
            index_add(c, set, slot, vpn);
        }
        tags[slot] = vpn;
    }
    e[slot].data = 0;
    e[slot].asid = asid;
    e[slot].flags = flags | XC_VALID;
    bit_set(c->valid + set * c->words, slot);
    touch(c, set, slot, was_valid);
}

/* WalkCache.lookup / insert (fully associative, LRU). */
static inline uint32_t pwc_find(const struct xc_cache *c, uint64_t prefix, uint32_t asid)
{
    uint32_t w;
    for (w = find_tag(c->tags, c->ways, prefix, 0); w != NIL;
         w = find_tag(c->tags, c->ways, prefix, w + 1))
        if (c->e[w].asid == asid)
            break;
    return w;
}

static const struct xc_entry *pwc_lookup(struct xc_cache *c, uint64_t prefix, uint32_t asid)
{
    const uint32_t w = pwc_find(c, prefix, asid);
    if (w == NIL)
        return NULL;
    touch(c, 0, w, 1);
    return &c->e[w];
}

static void pwc_insert(struct xc_cache *c, uint64_t prefix, uint32_t asid, uint64_t table,
                       uint32_t flags)
{
    if (!c->ways)
        return;
    uint32_t w = pwc_find(c, prefix, asid);
    if (w == NIL)
        w = victim(c, 0);
    const int was_valid = (c->e[w].flags & XC_VALID) != 0;
    c->tags[w] = prefix;
    c->e[w].data = table;
    c->e[w].asid = asid;
    c->e[w].flags = flags | XC_VALID;
    bit_set(c->valid, w);
    touch(c, 0, w, was_valid);
}

/* ---- the walk (mmuemu/hw/pwc.py walk_cached) ------------------------------ */
static int walk(struct exact_state *s, uint64_t va, int access, uint32_t *flags)
{
    const int x86 = s->arch == EXACT_ARCH_X86_64;
    const uint64_t size = s->phys_size;
    const uint8_t *const phys = s->phys;
    const uint32_t asid = s->asid;
    uint64_t table = s->root & ADDR_MASK;
    int writable = 1, nx = 0, start = 0;

    s->walks++;
    if (va >= (x86 ? X86_TASK_SIZE : A64_TASK_SIZE))
        goto fault;
    for (int level = CACHED_LEVELS - 1; level >= 0; level--) {
        struct xc_cache *c = &s->pwc[level];
        if (!c->ways)
            continue;
        const struct xc_entry *e = pwc_lookup(c, va >> prefix_shift(level), asid);
        if (e) {
            s->pwc_hits[level]++;
            start = level + 1;
            table = e->data;
            writable = (e->flags & XC_WRITABLE) != 0;
            nx = (e->flags & XC_NX) != 0;
            break;
        }
    }
    for (int level = start; level < LEVELS - 1; level++) {
        const uint64_t epa = table + 8u * pt_index(va, level);
        if (epa + 8 > size)
            goto fault;
        const uint64_t e = rd64(phys + epa);
        s->walk_refs[level]++;
        if (x86) {
            if (!(e & X86_P) || !(e & X86_US))
                goto fault;
            if (!(e & X86_RW))
                writable = 0;
            if (e & X86_NX)
                nx = 1;
        } else if ((e & 3) != A64_TABLE) {
            goto fault;
        }
        table = e & ADDR_MASK;
        pwc_insert(&s->pwc[level], va >> prefix_shift(level), asid, table,
                   (writable ? XC_WRITABLE : 0) | (nx ? XC_NX : 0));
    }
    {
        const uint64_t epa = table + 8u * pt_index(va, LEVELS - 1);
        if (epa + 8 > size)
            goto fault;
        const uint64_t pte = rd64(phys + epa);
        s->walk_refs[LEVELS - 1]++;
        if ((access == UC_MEM_WRITE && !writable) || (access == UC_MEM_FETCH && nx))
            goto fault;
        uint64_t n;
        uint32_t p;
        if (!(x86 ? x86_leaf(pte, access, &n, &p) : a64_leaf(pte, access, &n, &p)))
            goto fault;
        if (nx)
            p &= ~(uint32_t)UC_PROT_EXEC;
        if (!writable)
            p &= ~(uint32_t)UC_PROT_WRITE;
        const int global = x86 ? (n & X86_G) != 0 : !(n & A64_NG);
        *flags = (p << XC_PERM_SHIFT) | (global ? XC_GLOBAL : 0);
        return 1;
    }
fault:
    s->walk_faults++;
    return 0;
}

/* ---- one access (TlbHierarchy.access) ------------------------------------- */
static const uint32_t NEED[3] = { UC_PROT_READ, UC_PROT_WRITE, UC_PROT_EXEC };

static inline int do_access(struct exact_state *s, uint64_t va, int access)
{
    const unsigned kind = (unsigned)(access - UC_MEM_READ);
    if (kind > 2)
        return -1;
    const uint64_t vpn = va >> 12;
    const uint32_t need = NEED[kind];
    const uint32_t asid = s->asid;
    struct xc_cache *l1 = &s->tlb[kind == 2 ? TLB_L1I : TLB_L1D];
    struct xc_cache *l2 = &s->tlb[TLB_L2];
    uint32_t flags, e_asid, l1_match, l2_match;
    int out;

    s->lookups[kind]++;
    if (tlb_lookup(l1, vpn, asid, need, &flags, &e_asid, &l1_match)) {
        out = OUT_L1_HIT;
    } else if (tlb_lookup(l2, vpn, asid, need, &flags, &e_asid, &l2_match)) {
        /* a copy of the L2 entry (a global one may carry another ASID) */
        tlb_insert(l1, vpn, e_asid, flags & ~XC_VALID, e_asid == asid ? l1_match : NIL);
        out = OUT_L2_HIT;
    } else if (walk(s, va, access, &flags)) {
        tlb_insert(l2, vpn, asid, flags, l2_match);
        tlb_insert(l1, vpn, asid, flags, l1_match);
        out = OUT_WALK;
    } else {
        out = OUT_FAULT;
    }
    s->outcomes[out]++;
    return out;
}

/**
 * mmuemu_exact_access - look one user-mode access up (16 read, 17 write,
 * 18 fetch) at virtual address @va. Return: 0 L1 hit, 1 L2 hit, 2 walked
 * and filled, 3 walk faulted; -1 for an unknown access kind.
 */
MMUEMU_EXPORT int mmuemu_exact_access(struct exact_state *s, uint64_t va, int access)
{
    return do_access(s, va, access);
}

/* ---- invalidation (TlbiOp scopes, mmuemu/hw/tlb.py) ----------------------- */
enum { TLB_NONE = 0, TLB_ALL = 1, TLB_ALL_NONGLOBAL = 2, TLB_ASID = 3, TLB_VA = 4,
       TLB_VA_NONGLOBAL = 5 };
enum { WALK_NONE = 0, WALK_ALL = 1, WALK_ASID = 2, WALK_VA_ASID = 3 };

static int tlbi_match(const struct xc_entry *e, uint64_t tag, int scope, uint32_t asid,
                      uint64_t vpn)
{
    const int global = (e->flags & XC_GLOBAL) != 0;
    switch (scope) {
    case TLB_ALL:
        return 1;
    case TLB_ALL_NONGLOBAL:
        return !global;
    case TLB_ASID:
        return !global && e->asid == asid;
    case TLB_VA:
        return tag == vpn && (global || e->asid == asid);
    case TLB_VA_NONGLOBAL:
        return tag == vpn && !global && e->asid == asid;
    default:
        return 0;
    }
}

/**
 * mmuemu_exact_invalidate - apply one TlbiOp (its encode()): @tlb_scope to
 * the three TLBs, @walk_scope to the walk caches. Return: TLB entries removed.
 */
MMUEMU_EXPORT uint64_t mmuemu_exact_invalidate(struct exact_state *s, int tlb_scope,
                                               int walk_scope, uint32_t asid, uint64_t vpn)
{
    uint64_t n = 0;
    if (tlb_scope != TLB_NONE) {
        const int by_va = tlb_scope == TLB_VA || tlb_scope == TLB_VA_NONGLOBAL;
        for (int t = 0; t < NTLBS; t++) {
            struct xc_cache *c = &s->tlb[t];
            const uint64_t first = by_va ? set_of(c, vpn) : 0;
            const uint64_t last = by_va ? first + 1 : c->sets;
            for (uint64_t set = first; set < last; set++) {
                struct xc_entry *e = c->e + set * c->ways;
                const uint64_t *tags = c->tags + set * c->ways;
                for (uint32_t w = 0; w < c->ways; w++) {
                    if ((e[w].flags & XC_VALID) &&
                        tlbi_match(&e[w], tags[w], tlb_scope, asid, vpn)) {
                        drop(c, set, w, 1);
                        n++;
                    }
                }
            }
        }
    }
    if (walk_scope != WALK_NONE) {
        for (int level = 0; level < CACHED_LEVELS; level++) {
            struct xc_cache *c = &s->pwc[level];
            for (uint32_t w = 0; w < c->ways; w++) {
                struct xc_entry *e = &c->e[w];
                if (!(e->flags & XC_VALID))
                    continue;
                int hit = walk_scope == WALK_ALL ||
                          (e->asid == asid &&
                           (walk_scope == WALK_ASID ||
                            ((vpn << 12) >> prefix_shift(level)) == c->tags[w]));
                if (hit)
                    drop(c, 0, w, 1);
            }
        }
    }
    return n;
}

/** mmuemu_exact_set_context - load a translation root and ASID/PCID. */
MMUEMU_EXPORT void mmuemu_exact_set_context(struct exact_state *s, uint64_t root,
                                            uint32_t asid)
{
    s->root = root;
    s->asid = asid;
}

/* ---- PA -> VA recovery ------------------------------------------------------ */
static void new_generation(struct exact_state *s)
{
    if (++s->gen > GEN_MAX) {
        memset(s->owner, 0, (size_t)s->nwindows * s->nframes * sizeof *s->owner);
        s->gen = 1;
    }
    s->pending_flush = 0;
    softtlb_flushed(&s->sizing);   /* every flush of Unicorn's TLB comes through here */
}

static void flush_unicorn(struct exact_state *s, uc_engine *uc)
{
    if (uc && s->ctl) {
        s->ctl(uc, (int)s->ctl_flush);
        s->uc_flushes++;
    }
    new_generation(s);
}

static inline uint64_t alias(struct exact_state *s, uc_engine *uc, uint64_t va, uint64_t pa,
                             int type)
{
    const uint64_t pfn = pa >> 12;
    if (!s->owner || pfn >= s->nframes)
        return pa;
    const uint64_t want = (s->gen << GEN_SHIFT) | ((va >> 12) + 1);
    for (uint64_t w = 0; w < s->nwindows; w++) {
        uint64_t *o = &s->owner[w * s->nframes + pfn];
        if ((*o >> GEN_SHIFT) != s->gen || *o == want) {
            *o = want;
            if (w)
                s->alias_fills++;
            return (w << s->window_shift) | pa;
        }
    }
    if (type != UC_MEM_FETCH && uc && s->ctl) {
        flush_unicorn(s, uc);
        s->owner[pfn] = (s->gen << GEN_SHIFT) | ((va >> 12) + 1);
        return pa;
    }
    const uint64_t w = s->nwindows - 1;
    s->owner[w * s->nframes + pfn] = want;
    s->pending_flush = 1;
    s->steals++;
    s->alias_fills++;
    return (w << s->window_shift) | pa;
}

/**
 * mmuemu_exact_alias - the Unicorn physical address to fill virtual page
 * @va -> frame @pa (@type: the access being filled) with: @pa in a window
 * where no other virtual page uses that frame in this generation. May flush
 * Unicorn's soft TLB through @uc (data fills only; see the file comment).
 */
MMUEMU_EXPORT uint64_t mmuemu_exact_alias(struct exact_state *s, uc_engine *uc, uint64_t va,
                                          uint64_t pa, int type)
{
    return alias(s, uc, va, pa, type);
}

/** mmuemu_exact_uc_flushed - Unicorn's soft TLB was flushed: every window is free. */
MMUEMU_EXPORT void mmuemu_exact_uc_flushed(struct exact_state *s)
{
    new_generation(s);
}

static inline uint64_t va_of(const struct exact_state *s, uint64_t address)
{
    const uint64_t w = address >> s->window_shift;
    const uint64_t pfn = (address & ((1ull << s->window_shift) - 1)) >> 12;
    if (!s->owner || w >= s->nwindows || pfn >= s->nframes)
        return UINT64_MAX;
    const uint64_t o = s->owner[w * s->nframes + pfn];
    if ((o >> GEN_SHIFT) != s->gen || !(o & OWNER_VPN_MASK))
        return UINT64_MAX;
    return (((o & OWNER_VPN_MASK) - 1) << 12) | (address & 0xFFF);
}

/** mmuemu_exact_va_of - the virtual address behind a memory-hook address, or
 * UINT64_MAX if no virtual page owns it. */
MMUEMU_EXPORT uint64_t mmuemu_exact_va_of(const struct exact_state *s, uint64_t address)
{
    return va_of(s, address);
}

/* ---- the hooks ---------------------------------------------------------------- */

/**
 * mmuemu_exact_tlb_fill - UC_HOOK_TLB_FILL callback (@user_data: the state):
 * the fast path's fill (fp_fill on fp_state: walk, A/D, counters), then the
 * physical address moved into the virtual page's window.
 */
MMUEMU_EXPORT bool mmuemu_exact_tlb_fill(uc_engine *uc, uint64_t vaddr, int type,
                                         mmuemu_uc_tlb_entry *result, void *user_data)
{
    struct exact_state *s = user_data;
    if (!s->fp_fill(uc, vaddr, type, result, s->fp_state))
        return false;
    if (__builtin_expect(softtlb_filled(&s->sizing), 0) && uc && s->ctl) {
        if (type != UC_MEM_FETCH) {     /* grow Unicorn's TLB (softtlb.h) */
            s->sizing.grow_flushes++;
            flush_unicorn(s, uc);
        } else {
            s->sizing.pending = 1;      /* the next block hook flushes */
        }
    }
    result->paddr = alias(s, uc, vaddr, result->paddr, type);
    return true;
}

/** mmuemu_exact_mem - UC_HOOK_MEM_READ|UC_HOOK_MEM_WRITE callback. */
MMUEMU_EXPORT void mmuemu_exact_mem(uc_engine *uc, int type, uint64_t address, int size,
                                    int64_t value, void *user_data)
{
    struct exact_state *s = user_data;
    (void)uc;
    (void)value;
    const uint64_t va = va_of(s, address);
    if (va == UINT64_MAX) {
        s->unknown++;
        return;
    }
    do_access(s, va, type);
    if (size > 1 && (va & 0xFFF) + (uint64_t)size > 0x1000)
        do_access(s, (va | 0xFFF) + 1, type);   /* the second page of a split access */
}

/** mmuemu_exact_block - UC_HOOK_BLOCK callback: the iTLB, once per page of the
 * block; and Unicorn's skip_sync_pc_on_exit flag (see the file comment). */
MMUEMU_EXPORT void mmuemu_exact_block(uc_engine *uc, uint64_t address, uint32_t size,
                                      void *user_data)
{
    struct exact_state *s = user_data;
    if (s->skip_sync_off)   /* no state sync before our memory hooks (file comment) */
        ((uint8_t *)uc)[s->skip_sync_off] = 1;
    if (s->pending_flush || s->sizing.pending) {
        s->sizing.grow_flushes += s->sizing.pending;
        flush_unicorn(s, uc);
    }
    uint64_t first = address >> 12;
    uint64_t last = first;
    if (size > 0 && size <= (1u << 20))
        last = (address + size - 1) >> 12;
    for (uint64_t vpn = first; vpn <= last; vpn++)
        do_access(s, vpn == first ? address : vpn << 12, UC_MEM_FETCH);
}

/* ---- lifetime and layout -------------------------------------------------------- */
static void cache_free(struct xc_cache *c)
{
    free(c->e);
    free(c->tags);
    free(c->set);
    free(c->valid);
    free(c->mrubits);
    c->e = NULL;
    c->tags = NULL;
    c->set = NULL;
    c->valid = NULL;
    c->mrubits = NULL;
}

static int cache_alloc(struct xc_cache *c, int indexed)
{
    c->e = NULL;
    c->tags = NULL;
    c->set = NULL;
    c->valid = NULL;
    c->mrubits = NULL;
    c->mru = 0;
    c->words = (c->ways + 63) / 64;
    c->index_bits = 0;
    if (!c->ways || !c->sets)
        return 1;
    if (indexed && c->ways >= INDEX_MIN_WAYS)
        while ((1u << c->index_bits) < 2 * c->ways)
            c->index_bits++;
    const size_t n = (size_t)c->sets * c->ways, nw = (size_t)c->sets * c->words;
    const size_t index_slots = c->index_bits ? (size_t)c->sets << c->index_bits : 0;
    c->e = calloc(n, sizeof *c->e);
    c->tags = malloc(n * sizeof *c->tags + index_slots * sizeof(uint32_t));
    c->set = malloc(c->sets * sizeof *c->set);
    c->valid = calloc(nw, sizeof *c->valid);
    c->mrubits = calloc(nw, sizeof *c->mrubits);
    if (!c->e || !c->tags || !c->set || !c->valid || !c->mrubits) {
        cache_free(c);
        return 0;
    }
    for (uint32_t i = 0; i < c->sets; i++)
        c->set[i].head = c->set[i].tail = NIL;
    for (size_t i = 0; i < n; i++)
        c->tags[i] = NO_TAG;
    if (index_slots)
        memset(tag_index(c, 0), 0xFF, index_slots * sizeof(uint32_t));   /* all NIL */
    return 1;
}

/** mmuemu_exact_free - release what mmuemu_exact_alloc allocated. */
MMUEMU_EXPORT void mmuemu_exact_free(struct exact_state *s)
{
    for (int t = 0; t < NTLBS; t++)
        cache_free(&s->tlb[t]);
    for (int l = 0; l < CACHED_LEVELS; l++)
        cache_free(&s->pwc[l]);
    free(s->owner);
    s->owner = NULL;
}

/**
 * mmuemu_exact_alloc - allocate the caches (from sets/ways/plru already in
 * the state) and, if nwindows > 0, the owner table. Return: 1, or 0 when out
 * of memory (nothing is left allocated).
 */
MMUEMU_EXPORT int mmuemu_exact_alloc(struct exact_state *s)
{
    int ok = 1;
    for (int t = 0; t < NTLBS; t++)
        ok &= cache_alloc(&s->tlb[t], 1);
    for (int l = 0; l < CACHED_LEVELS; l++)
        ok &= cache_alloc(&s->pwc[l], 0);
    s->owner = NULL;
    if (ok && s->nwindows) {
        s->owner = calloc((size_t)s->nwindows * s->nframes, sizeof *s->owner);
        ok = s->owner != NULL;
    }
    s->gen = 1;
    if (!ok)
        mmuemu_exact_free(s);
    return ok;
}

/** mmuemu_exact_layout - version and sizeof of the state, and of its parts
 * (@sizes: exact_state, xc_cache, xc_entry), for the ctypes mirror. */
MMUEMU_EXPORT uint32_t mmuemu_exact_layout(uint32_t sizes[3])
{
    sizes[0] = (uint32_t)sizeof(struct exact_state);
    sizes[1] = (uint32_t)sizeof(struct xc_cache);
    sizes[2] = (uint32_t)sizeof(struct xc_entry);
    return EXACT_STATE_VERSION;
}

/** mmuemu_exact_offset - offsetof a state field by index; UINT32_MAX past the end. */
MMUEMU_EXPORT uint32_t mmuemu_exact_offset(uint32_t field)
{
    static const uint32_t offs[] = {
        offsetof(struct exact_state, version),
        offsetof(struct exact_state, size),
        offsetof(struct exact_state, phys),
        offsetof(struct exact_state, phys_size),
        offsetof(struct exact_state, root),
        offsetof(struct exact_state, arch),
        offsetof(struct exact_state, asid),
        offsetof(struct exact_state, tlb),
        offsetof(struct exact_state, pwc),
        offsetof(struct exact_state, walks),
        offsetof(struct exact_state, walk_refs),
        offsetof(struct exact_state, pwc_hits),
        offsetof(struct exact_state, walk_faults),
        offsetof(struct exact_state, lookups),
        offsetof(struct exact_state, outcomes),
        offsetof(struct exact_state, owner),
        offsetof(struct exact_state, nframes),
        offsetof(struct exact_state, nwindows),
        offsetof(struct exact_state, window_shift),
        offsetof(struct exact_state, gen),
        offsetof(struct exact_state, pending_flush),
        offsetof(struct exact_state, pad0),
        offsetof(struct exact_state, alias_fills),
        offsetof(struct exact_state, uc_flushes),
        offsetof(struct exact_state, steals),
        offsetof(struct exact_state, unknown),
        offsetof(struct exact_state, fp_fill),
        offsetof(struct exact_state, fp_state),
        offsetof(struct exact_state, ctl),
        offsetof(struct exact_state, ctl_flush),
        offsetof(struct exact_state, skip_sync_off),
        offsetof(struct exact_state, sizing),
    };
    return field < sizeof offs / sizeof offs[0] ? offs[field] : UINT32_MAX;
}

/* ---- the (empty) Python module ------------------------------------------- */
static struct PyModuleDef exact_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_exact",
    .m_doc = "mmuemu native exact mode (architected TLBs); the C functions are reached "
             "through ctypes (see mmuemu.emu.exact).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__exact(void)
{
    return PyModule_Create(&exact_module);
}
