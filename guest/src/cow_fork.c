/* cow_fork N: map N anonymous pages and write them all, then fork. The child
 * writes every page (each write is a COW fault: the page is shared with the
 * parent) and exits with a checksum-derived status; the parent waits, then
 * writes every page itself (now the only mapper: each write reuses the page,
 * a write-protect fault without a copy), and checks both saw their own data.
 * Output is printed by the parent only, after the child is reaped. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 64);
    volatile u8 *p = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die("cow_fork: mmap");
    for (u64 i = 0; i < n; i++)
        p[i * PAGE_SIZE] = (u8)(i + 1);
    long pid = sys_fork();
    if (pid < 0)
        die_errno("cow_fork: fork", pid);
    if (pid == 0) {
        u64 sum = 0;
        for (u64 i = 0; i < n; i++) {
            sum += p[i * PAGE_SIZE];
            p[i * PAGE_SIZE] = (u8)(0x80 | i);
        }
        for (u64 i = 0; i < n; i++)
            if (p[i * PAGE_SIZE] != (u8)(0x80 | i))
                sys_exit_group(99);
        sys_exit_group((int)(sum & 0x3f));
    }
    int status = 0;
    long r = sys_wait4((int)pid, &status, 0, NULL);
    if (r != pid)
        die_errno("cow_fork: wait4", r);
    u64 sum = 0;
    for (u64 i = 0; i < n; i++) {
        if (p[i * PAGE_SIZE] != (u8)(i + 1))
            die("cow_fork: the child's write reached the parent");
        p[i * PAGE_SIZE] = (u8)(i + 2);
        sum += p[i * PAGE_SIZE];
    }
    fdprintf(STDOUT_FILENO, "cow_fork: pages=%lu child_status=%d parent_sum=%lu\n",
             (unsigned long)n, (status >> 8) & 0xff, (unsigned long)sum);
    return 0;
}
