/* munmap_hole N: map N anonymous pages (N >= 8) and write them, punch a hole
 * of N/4 pages in the middle (the VMA splits; the pages are freed and their
 * PTEs cleared with one TLB flush), check the two sides kept their data, map
 * new pages into the hole with MAP_FIXED (they read as zero), and unmap all. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 32);
    if (n < 8)
        n = 8;
    volatile u8 *p = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die("munmap_hole: mmap");
    for (u64 i = 0; i < n; i++)
        p[i * PAGE_SIZE] = (u8)(i + 1);
    u64 h0 = n / 2 - n / 8, hn = n / 4;
    long r = sys_munmap((void *)(p + h0 * PAGE_SIZE), hn * PAGE_SIZE);
    if (r < 0)
        die_errno("munmap_hole: munmap", r);
    u64 sum = 0;
    for (u64 i = 0; i < n; i++)
        if (i < h0 || i >= h0 + hn)
            sum += p[i * PAGE_SIZE];
    void *f = sys_mmap((void *)(p + h0 * PAGE_SIZE), hn * PAGE_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (f != (void *)(p + h0 * PAGE_SIZE))
        die("munmap_hole: MAP_FIXED");
    u64 zeros = 0;
    for (u64 i = h0; i < h0 + hn; i++)
        zeros += p[i * PAGE_SIZE] == 0;
    sys_munmap((void *)p, n * PAGE_SIZE);
    fdprintf(STDOUT_FILENO, "munmap_hole: pages=%lu hole=%lu sum=%lu zeros=%lu\n",
             (unsigned long)n, (unsigned long)hn, (unsigned long)sum, (unsigned long)zeros);
    return 0;
}
