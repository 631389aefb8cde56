/* madvise_dontneed N: write N anonymous pages, MADV_DONTNEED them (the
 * pages are freed), read them (zero-page faults, must read 0), write again
 * (write-protect faults); then the same on a private file mapping, whose
 * pages come back from the page cache after DONTNEED. */
#include "rt.h"

static u8 page[PAGE_SIZE];

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 16);
    volatile u8 *a = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(a))
        die("madvise_dontneed: mmap");
    for (u64 i = 0; i < n; i++)
        a[i * PAGE_SIZE] = 0x77;
    long r = sys_madvise((void *)a, n * PAGE_SIZE, MADV_DONTNEED);
    if (r < 0)
        die_errno("madvise_dontneed: madvise", r);
    u64 zeros = 0, sum = 0;
    for (u64 i = 0; i < n; i++)
        zeros += a[i * PAGE_SIZE] == 0;
    for (u64 i = 0; i < n; i++)
        a[i * PAGE_SIZE] = (u8)i;
    for (u64 i = 0; i < n; i++)
        sum += a[i * PAGE_SIZE];

    long fd = sys_openat(AT_FDCWD, "dn.dat", O_CREAT | O_TRUNC | O_RDWR, 0644);
    for (u64 i = 0; i < n; i++) {
        memset(page, (int)(i + 1), PAGE_SIZE);
        sys_write((int)fd, page, PAGE_SIZE);
    }
    volatile u8 *f = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, (int)fd, 0);
    if (SYS_ERR(f))
        die("madvise_dontneed: mmap file");
    for (u64 i = 0; i < n; i++)
        f[i * PAGE_SIZE] = 0; /* private copies */
    sys_madvise((void *)f, n * PAGE_SIZE, MADV_DONTNEED);
    for (u64 i = 0; i < n; i++)
        sum += f[i * PAGE_SIZE]; /* the file's bytes again */
    sys_munmap((void *)f, n * PAGE_SIZE);
    sys_munmap((void *)a, n * PAGE_SIZE);
    sys_close((int)fd);
    sys_unlinkat(AT_FDCWD, "dn.dat", 0);
    fdprintf(STDOUT_FILENO, "madvise_dontneed: pages=%lu zeros=%lu checksum=%lu\n",
             (unsigned long)n, (unsigned long)zeros, (unsigned long)sum);
    return 0;
}
