/* swap_stress PAGES [ROUNDS]: one anonymous private RW mmap of PAGES pages
 * (default 2048, 8 MiB). Round 0 fills every word of every page with a
 * pattern of (page, round, word); each later round walks the pages in order,
 * checks every word against the previous round's pattern (a page that is lost,
 * zeroed or swapped in at the wrong place is counted bad) and rewrites it with
 * its own. A last read-only pass walks the pages in reverse and checks the
 * final round's pattern. ROUNDS (default 3) counts round 0. Each line's sum
 * is a checksum of the words read in that pass (round 0: the words written).
 * Expected kernel behaviour: under --mem smaller than the working set, anon
 * pages are reclaimed to swap (pswpout) and faulted back on the next touch
 * (pswpin, major faults); the data must survive exactly. Output depends only
 * on PAGES and ROUNDS. */
#include "rt.h"

#define WORDS (PAGE_SIZE / 8)

static u64 base(u64 i, u64 r)
{
    u64 x = (i + 1) * 0x9e3779b97f4a7c15ULL ^ (r + 1) * 0xc2b2ae3d27d4eb4fULL;
    return x ^ (x >> 29);
}

/* Word w of page i in round r is base(i, r) + w * STEP. */
#define STEP 0x165667b19e3779f9ULL

/* Check page i against round r's pattern, add its words to *sum; 1 if bad. */
static int check_page(volatile u64 *p, u64 i, u64 r, u64 *sum)
{
    u64 want = base(i, r), s = *sum, bad = 0;
    for (u64 w = 0; w < WORDS; w++, want += STEP) {
        u64 v = p[w];
        bad |= v ^ want;
        s = (s << 1 | s >> 63) + v;
    }
    *sum = s;
    return bad != 0;
}

static void fill_page(volatile u64 *p, u64 i, u64 r, u64 *sum)
{
    u64 v = base(i, r), s = *sum;
    for (u64 w = 0; w < WORDS; w++, v += STEP) {
        p[w] = v;
        s = (s << 1 | s >> 63) + v;
    }
    *sum = s;
}

static void report(u64 i, const char *when)
{
    static u64 shown;
    if (shown++ < 8)
        eprintf("swap_stress: page %lu bad in %s\n", (unsigned long)i, when);
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 2048);
    u64 rounds = arg_u64(argc, argv, 2, 3);
    if (n == 0 || rounds == 0 || rounds > 255) {
        eprintf("usage: swap_stress PAGES [ROUNDS]  (PAGES >= 1, 1 <= ROUNDS <= 255)\n");
        return 2;
    }
    volatile u64 *p = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die_errno("swap_stress: mmap", (long)p);

    u64 total_bad = 0;
    for (u64 r = 0; r < rounds; r++) {
        u64 sum = 0, bad = 0, unused = 0;
        for (u64 i = 0; i < n; i++) {
            volatile u64 *pg = p + i * WORDS;
            if (r > 0 && check_page(pg, i, r - 1, &sum)) {
                bad++;
                report(i, "forward round");
            }
            fill_page(pg, i, r, r == 0 ? &sum : &unused);
        }
        printf("round %lu: pages %lu bad %lu sum 0x%016lx\n", (unsigned long)r,
               (unsigned long)n, (unsigned long)bad, (unsigned long)sum);
        total_bad += bad;
    }
    u64 sum = 0, bad = 0;
    for (u64 i = n; i-- > 0;)
        if (check_page(p + i * WORDS, i, rounds - 1, &sum)) {
            bad++;
            report(i, "reverse pass");
        }
    printf("reverse: pages %lu bad %lu sum 0x%016lx\n", (unsigned long)n,
           (unsigned long)bad, (unsigned long)sum);
    total_bad += bad;

    long r = sys_munmap((void *)p, n * PAGE_SIZE);
    if (r < 0)
        die_errno("swap_stress: munmap", r);
    if (total_bad) {
        printf("swap_stress: FAIL %lu bad pages\n", (unsigned long)total_bad);
        return 1;
    }
    printf("swap_stress: OK\n");
    return 0;
}
