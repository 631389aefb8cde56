/* brk_heap N: grow the heap with brk() by N pages (default 32) in 4 steps,
 * write one byte per page (anonymous write faults in the brk VMA), shrink it
 * to N/2 pages (the kernel unmaps the top half), grow it back (the top half
 * must read as zero again), verify, and restore the original break. */
#include "rt.h"

#define STEPS 4
#define OFF(i) ((i) * PAGE_SIZE + ((i) * 32) % PAGE_SIZE)
#define VAL(i) ((u8)(((i) * 5 + 3) & 0xff))

static void set_brk(unsigned long want, const char *what)
{
    unsigned long got = sys_brk(want);
    if (got != want) {
        eprintf("brk_heap: %s: brk did not move\n", what);
        sys_exit_group(1);
    }
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 32);
    unsigned long base = sys_brk(0);
    unsigned long start = (base + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    volatile u8 *p = (volatile u8 *)start;
    u64 step = (n + STEPS - 1) / STEPS, half = n / 2;

    for (u64 k = 1; k <= STEPS; k++) {
        u64 pages = k * step < n ? k * step : n;
        set_brk(start + pages * PAGE_SIZE, "grow");
    }
    for (u64 i = 0; i < n; i++)
        p[OFF(i)] = VAL(i);

    set_brk(start + half * PAGE_SIZE, "shrink");
    set_brk(start + n * PAGE_SIZE, "regrow");

    u64 sum = 0;
    for (u64 i = 0; i < n; i++) {
        u8 v = p[OFF(i)], want = i < half ? VAL(i) : 0;
        if (v != want) {
            eprintf("brk_heap: page %lu: got %u want %u\n",
                    (unsigned long)i, v, want);
            return 1;
        }
        if (i >= half)
            p[OFF(i)] = VAL(i);
        sum += VAL(i);
    }
    for (u64 i = 0; i < n; i++)
        if (p[OFF(i)] != VAL(i))
            die("brk_heap: rewrite lost");

    printf("brk_heap: pages=%lu kept=%lu checksum=%lu\n",
           (unsigned long)n, (unsigned long)half, (unsigned long)sum);
    set_brk(base, "restore");
    return 0;
}
