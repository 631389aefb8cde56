/* mprotect_split N: map N anonymous pages (N >= 4), write them all, make the
 * middle half read-only (the VMA splits in three; the PTEs are write-protected
 * and the TLB flushed), read everything, make it writable again (the VMAs
 * merge back), write again, and count the VMAs in /proc/self/maps before and
 * after when that file exists (mmuemu and Linux both have it). */
#include "rt.h"

static char maps[8192];

static long count_maps(void)
{
    long fd = sys_openat(AT_FDCWD, "/proc/self/maps", O_RDONLY, 0);
    if (fd < 0)
        return -1;
    long n = 0, r, lines = 0;
    while ((r = sys_read((int)fd, maps + n, sizeof(maps) - 1 - (u64)n)) > 0)
        n += r;
    sys_close((int)fd);
    for (long i = 0; i < n; i++)
        lines += maps[i] == '\n';
    return lines;
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 16);
    if (n < 4)
        n = 4;
    volatile u8 *p = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die("mprotect_split: mmap");
    for (u64 i = 0; i < n; i++)
        p[i * PAGE_SIZE] = (u8)i;
    long before = count_maps();
    long r = sys_mprotect((void *)(p + n / 4 * PAGE_SIZE), n / 2 * PAGE_SIZE, PROT_READ);
    if (r < 0)
        die_errno("mprotect_split: mprotect", r);
    long split = count_maps();
    u64 sum = 0;
    for (u64 i = 0; i < n; i++)
        sum += p[i * PAGE_SIZE];
    r = sys_mprotect((void *)p, n * PAGE_SIZE, PROT_READ | PROT_WRITE);
    if (r < 0)
        die_errno("mprotect_split: mprotect back", r);
    long merged = count_maps();
    for (u64 i = 0; i < n; i++)
        p[i * PAGE_SIZE] = (u8)(i + 1);
    for (u64 i = 0; i < n; i++)
        sum += p[i * PAGE_SIZE];
    fdprintf(STDOUT_FILENO, "mprotect_split: pages=%lu sum=%lu split_vmas=%ld merged_vmas=%ld\n",
             (unsigned long)n, (unsigned long)sum, split - before, merged - before);
    return 0;
}
