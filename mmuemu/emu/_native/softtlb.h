/*
 * Sizing Unicorn's soft TLB: when to flush it so that QEMU grows it.
 *
 * Shared by fastpath.c (fast mode) and exact.c (exact mode); each keeps one
 * struct softtlb_sizing and calls softtlb_filled() on every resolved fill and
 * softtlb_flushed() after every flush of Unicorn's TLB, whoever asked for it.
 *
 * Why. QEMU's softmmu TLB (accel/tcg/cputlb.c in Unicorn 2.1.4) is a
 * direct-mapped table per MMU mode that starts at 256 entries
 * (CPU_TLB_DYN_DEFAULT_BITS) and is resized only when it is flushed
 * (tlb_flush_one_mmuidx_locked -> tlb_mmu_resize_locked): doubled, up to
 * 2^22 entries, when more than 70% of its entries were in use at the flush
 * (n_used_entries counts the occupied entries since the last flush); shrunk
 * toward the use seen when under 30% for a 100 ms window. A guest that
 * seldom flushes keeps 256 entries whatever its working set, and once the
 * working set outgrows them every access is a fill: 8 M fills for 8 M
 * touches of 4096 pages, each paying Unicorn's fill path (cpu_restore_state
 * and the hook chain) and our walk.
 *
 * The policy. After 2 x estimate resolved fills without any flush, flush:
 * that many fills into a table of `estimate` entries leave more than 70% of
 * them in use (all of them for a cyclic walk over consecutive pages; 86%
 * for random pages), so QEMU doubles the table, and the estimate doubles
 * with it. A working set of W pages then stops filling once the table has
 * grown past W, after about log2(W / 256) flushes and 4 W extra fills in
 * all. A flush that comes from the kernel model after 2 x estimate fills
 * doubles the estimate too (QEMU grew the table at that flush as well).
 *
 * The estimate may fall behind QEMU's real size (a kernel flush that grew
 * it after fewer fills) or run ahead of it (QEMU shrank it after a quiet
 * 100 ms window, down to 64 entries: a burst of page faults, each with its
 * flush, does that). Both cost only extra fills: running ahead, each flush
 * still finds the table over 70% used and doubles it, but the table fits
 * the working set only when the estimate is up to 4 times larger, after as
 * many as two more flushes; falling behind, a flush may find the table
 * under 70% used and leave it, and the doubling estimate catches up. The
 * number of fills (never the faults) therefore depends a little on timing,
 * as it did before through the kernel model's flushes. Nothing here
 * changes what the guest computes or which page faults it takes: a flush
 * only drops cached translations, which the next access walks again.
 *
 * A flush inside a data fill is safe (QEMU's load/store helpers look the
 * entry up again after tlb_fill, "TLB resize via tlb_fill may have moved
 * the entry"); inside an instruction-fetch fill it is not (it derails the
 * translator's code lookup), so a fetch fill only sets a pending flag and
 * the next block hook flushes.
 *
 * max_estimate is where the policy stops: once the estimate reaches it, no
 * more flushes are made to grow the table (QEMU's own ceiling is 2^22
 * entries, and it never grows the table past about twice the entries in
 * use). max_estimate <= 256 turns the policy off: Unicorn's table then
 * changes size only at the kernel model's flushes.
 */
#ifndef MMUEMU_SOFTTLB_H
#define MMUEMU_SOFTTLB_H

#include <stdint.h>

#define SOFTTLB_INITIAL 256u    /* CPU_TLB_DYN_DEFAULT_BITS = 8 */

struct softtlb_sizing {
    uint64_t fills;             /* resolved fills since Unicorn's TLB was last flushed */
    uint64_t estimate;          /* entries QEMU's table is believed to have */
    uint64_t max_estimate;      /* the estimate's ceiling; <= SOFTTLB_INITIAL: policy off */
    uint64_t grow_flushes;      /* flushes made by the policy */
    uint32_t pending;           /* a fetch fill asked for a flush: the next block hook does it */
    uint32_t pad;
};

/* Count one resolved fill. Return 1 when the policy wants a flush now. */
static inline int softtlb_filled(struct softtlb_sizing *z)
{
    return ++z->fills >= 2 * z->estimate && z->estimate < z->max_estimate;
}

/* Unicorn's TLB was flushed (by the policy or by anyone else). */
static inline void softtlb_flushed(struct softtlb_sizing *z)
{
    if (z->fills >= 2 * z->estimate && z->estimate < z->max_estimate)
        z->estimate *= 2;
    z->fills = 0;
    z->pending = 0;
}

static inline void softtlb_init(struct softtlb_sizing *z, uint64_t max_estimate)
{
    z->fills = 0;
    z->estimate = SOFTTLB_INITIAL;
    z->max_estimate = max_estimate;
    z->grow_flushes = 0;
    z->pending = 0;
    z->pad = 0;
}

#endif /* MMUEMU_SOFTTLB_H */
