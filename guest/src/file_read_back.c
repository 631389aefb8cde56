/* file_read_back N: like file_read, but touch the mapped pages from the last
 * to the first (fault-around windows are met from their top end). */
#include "rt.h"

static u8 page[PAGE_SIZE];

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 32);
    long fd = sys_openat(AT_FDCWD, "back.dat", O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die_errno("file_read_back: openat", fd);
    for (u64 i = 0; i < n; i++) {
        for (u64 j = 0; j < PAGE_SIZE; j++)
            page[j] = (u8)((i * 5 + j) & 0xff);
        if (sys_write((int)fd, page, PAGE_SIZE) != (long)PAGE_SIZE)
            die("file_read_back: short write");
    }
    volatile u8 *p = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ, MAP_PRIVATE, (int)fd, 0);
    if (SYS_ERR(p))
        die_errno("file_read_back: mmap", (long)p);
    u64 sum = 0;
    for (u64 i = n; i-- > 0;)
        sum += p[i * PAGE_SIZE + 17] * (i + 1);
    sys_munmap((void *)p, n * PAGE_SIZE);
    sys_close((int)fd);
    sys_unlinkat(AT_FDCWD, "back.dat", 0);
    fdprintf(STDOUT_FILENO, "file_read_back: pages=%lu checksum=%lu\n", (unsigned long)n,
             (unsigned long)sum);
    return 0;
}
