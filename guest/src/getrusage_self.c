/* getrusage_self: touch 100 fresh anonymous pages and check that
 * getrusage(RUSAGE_SELF).ru_minflt went up by at least 100. */
#include "rt.h"

#define PAGES 100

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    struct rusage before, after;
    size_t len = PAGES * PAGE_SIZE;
    volatile u8 *p = sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die_errno("getrusage_self: mmap", (long)p);
    /* one fault per page even where THP is "always"; failure is harmless */
    sys_madvise((void *)p, len, MADV_NOHUGEPAGE);

    long r = sys_getrusage(RUSAGE_SELF, &before);
    if (r < 0)
        die_errno("getrusage_self: getrusage", r);
    for (u64 i = 0; i < PAGES; i++)
        p[i * PAGE_SIZE] = (u8)i;
    r = sys_getrusage(RUSAGE_SELF, &after);
    if (r < 0)
        die_errno("getrusage_self: getrusage", r);

    long delta = after.ru_minflt - before.ru_minflt;
    if (delta < PAGES) {
        eprintf("getrusage_self: ru_minflt delta %ld < %d\n", delta, PAGES);
        return 1;
    }
    printf("getrusage_self: minflt delta >= %d\n", PAGES);
    sys_munmap((void *)p, len);
    return 0;
}
