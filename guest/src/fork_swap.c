/* fork_swap PAGES: the parent fills PAGES anonymous private pages (default
 * 1024) with pattern A and forks. The child checks every page (A), writes the
 * even pages with pattern B (COW faults: each copy is the child's own page),
 * checks all pages again (even: B, odd: A), prints its line and exits 0, or 1
 * on a mismatch. The parent waits for it, checks that all its pages still
 * hold A (COW isolation), writes the odd pages with pattern C (the child is
 * gone, so the pages are exclusive again and are reused), checks all pages
 * (even: A, odd: C) and prints its line and the verdict.
 * Expected kernel behaviour: under --mem smaller than the working set
 * (about 1.5 x PAGES while the child lives), pages shared by parent and child
 * are swapped out once (one swap entry in both page tables, pswpout) and
 * faulted back by either (pswpin, major faults, the swap cache), COW copies
 * are swapped out by their owner; no write may leak into the other process.
 * Output depends only on PAGES; the child prints before the parent's lines. */
#include "rt.h"

#define WORDS (PAGE_SIZE / 8)
#define STEP  0x165667b19e3779f9ULL

static u64 base(u64 i, u64 pat)
{
    u64 x = (i + 1) * 0x9e3779b97f4a7c15ULL ^ (pat + 1) * 0xc2b2ae3d27d4eb4fULL;
    return x ^ (x >> 29);
}

static void fill(volatile u64 *p, u64 i, u64 pat)
{
    u64 v = base(i, pat);
    for (u64 w = 0; w < WORDS; w++, v += STEP)
        p[w] = v;
}

/* Check pages 0..n-1: even ones hold pattern ev, odd ones od. Returns the
 * number of bad pages; adds every word to *sum. */
static u64 check(volatile u64 *p, u64 n, u64 ev, u64 od, u64 *sum, const char *who)
{
    u64 bad = 0, s = *sum;
    for (u64 i = 0; i < n; i++) {
        volatile u64 *pg = p + i * WORDS;
        u64 want = base(i, i & 1 ? od : ev), diff = 0;
        for (u64 w = 0; w < WORDS; w++, want += STEP) {
            u64 v = pg[w];
            diff |= v ^ want;
            s = (s << 1 | s >> 63) + v;
        }
        if (diff && bad++ < 8)
            eprintf("fork_swap: %s: page %lu bad\n", who, (unsigned long)i);
    }
    *sum = s;
    return bad;
}

enum { PAT_A, PAT_B, PAT_C };

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 1024);
    if (n == 0) {
        eprintf("usage: fork_swap PAGES  (PAGES >= 1)\n");
        return 2;
    }
    volatile u64 *p = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die_errno("fork_swap: mmap", (long)p);
    for (u64 i = 0; i < n; i++)
        fill(p + i * WORDS, i, PAT_A);

    long pid = sys_fork();
    if (pid < 0)
        die_errno("fork_swap: fork", pid);
    if (pid == 0) {
        u64 sum = 0;
        u64 bad = check(p, n, PAT_A, PAT_A, &sum, "child before COW");
        for (u64 i = 0; i < n; i += 2)
            fill(p + i * WORDS, i, PAT_B);
        bad += check(p, n, PAT_B, PAT_A, &sum, "child after COW");
        printf("child: pages %lu bad %lu sum 0x%016lx\n", (unsigned long)n,
               (unsigned long)bad, (unsigned long)sum);
        sys_exit_group(bad ? 1 : 0);
    }

    int status = 0;
    long r = sys_wait4((int)pid, &status, 0, NULL);
    if (r != pid)
        die_errno("fork_swap: wait4", r);
    int child_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (WIFEXITED(status))
        printf("parent: child exited %d\n", WEXITSTATUS(status));
    else
        printf("parent: child killed by signal %d\n", WTERMSIG(status));

    u64 sum = 0;
    u64 bad = check(p, n, PAT_A, PAT_A, &sum, "parent after wait");
    for (u64 i = 1; i < n; i += 2)
        fill(p + i * WORDS, i, PAT_C);
    bad += check(p, n, PAT_A, PAT_C, &sum, "parent after write");
    printf("parent: pages %lu bad %lu sum 0x%016lx\n", (unsigned long)n,
           (unsigned long)bad, (unsigned long)sum);
    sys_munmap((void *)p, n * PAGE_SIZE);
    if (bad || !child_ok) {
        printf("fork_swap: FAIL %lu bad pages%s\n", (unsigned long)bad,
               child_ok ? "" : ", child failed");
        return 1;
    }
    printf("fork_swap: OK\n");
    return 0;
}
