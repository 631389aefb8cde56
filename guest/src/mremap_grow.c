/* mremap_grow N: map N anonymous pages and write them; grow the mapping to 2N
 * pages in place (into a hole left above it on purpose), write the new
 * half; then map a guard
 * page right after it and grow to 3N with MREMAP_MAYMOVE: the pages move to
 * a new address without being copied or faulted; check every byte, shrink
 * to N pages, print a checksum. */
#include "rt.h"

#define MREMAP_MAYMOVE 1

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 16);
    /* reserve 3N+1 pages, keep the first N: the rest is room of our own to grow
     * into and to put the guard page in, away from anything else mapped */
    volatile u8 *p = sys_mmap(NULL, (3 * n + 1) * PAGE_SIZE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die("mremap_grow: mmap");
    sys_munmap((void *)(p + n * PAGE_SIZE), (2 * n + 1) * PAGE_SIZE);
    for (u64 i = 0; i < n; i++)
        p[i * PAGE_SIZE] = (u8)(i + 1);
    volatile u8 *q = sys_mremap((void *)p, n * PAGE_SIZE, 2 * n * PAGE_SIZE, 0, NULL);
    int in_place = !SYS_ERR(q) && q == p;
    if (SYS_ERR(q))
        q = sys_mremap((void *)p, n * PAGE_SIZE, 2 * n * PAGE_SIZE, MREMAP_MAYMOVE, NULL);
    if (SYS_ERR(q))
        die_errno("mremap_grow: mremap", (long)q);
    for (u64 i = n; i < 2 * n; i++)
        q[i * PAGE_SIZE] = (u8)(i + 1);
    void *guard = sys_mmap((void *)(q + 2 * n * PAGE_SIZE), PAGE_SIZE, PROT_READ,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (SYS_ERR(guard))
        die("mremap_grow: guard");
    volatile u8 *m = sys_mremap((void *)q, 2 * n * PAGE_SIZE, 3 * n * PAGE_SIZE,
                                MREMAP_MAYMOVE, NULL);
    if (SYS_ERR(m))
        die_errno("mremap_grow: mremap move", (long)m);
    u64 sum = 0;
    for (u64 i = 0; i < 2 * n; i++) {
        if (m[i * PAGE_SIZE] != (u8)(i + 1))
            die("mremap_grow: data lost in the move");
        sum += m[i * PAGE_SIZE];
    }
    for (u64 i = 2 * n; i < 3 * n; i++)
        sum += m[i * PAGE_SIZE]; /* fresh zero pages */
    volatile u8 *s = sys_mremap((void *)m, 3 * n * PAGE_SIZE, n * PAGE_SIZE, 0, NULL);
    fdprintf(STDOUT_FILENO, "mremap_grow: pages=%lu in_place=%d moved=%d shrink_same=%d sum=%lu\n",
             (unsigned long)n, in_place, m != q, s == m, (unsigned long)sum);
    return 0;
}
