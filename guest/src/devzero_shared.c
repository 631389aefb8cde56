/* devzero_shared N: mmap /dev/zero MAP_SHARED (shmem: shmem_fault, pages in
 * a shmem address_space) and MAP_SHARED|MAP_ANONYMOUS, write and read one
 * byte per page of each, print a checksum. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 16);
    long fd = sys_openat(AT_FDCWD, "/dev/zero", O_RDWR, 0);
    if (fd < 0)
        die_errno("devzero_shared: open /dev/zero", fd);
    volatile u8 *a = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
    volatile u8 *b = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(a) || SYS_ERR(b))
        die("devzero_shared: mmap");
    u64 sum = 0;
    for (u64 i = 0; i < n; i++) {
        sum += a[i * PAGE_SIZE + 5];          /* read first: shmem page, zero */
        a[i * PAGE_SIZE + 5] = (u8)(i + 1);
        b[i * PAGE_SIZE + 9] = (u8)(2 * i + 1); /* write first */
    }
    for (u64 i = 0; i < n; i++)
        sum += a[i * PAGE_SIZE + 5] + b[i * PAGE_SIZE + 9];
    sys_munmap((void *)a, n * PAGE_SIZE);
    sys_munmap((void *)b, n * PAGE_SIZE);
    sys_close((int)fd);
    fdprintf(STDOUT_FILENO, "devzero_shared: pages=%lu checksum=%lu\n", (unsigned long)n,
             (unsigned long)sum);
    return 0;
}
