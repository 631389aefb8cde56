/* anon_touch N: one anonymous private RW mmap of N pages (default 64); one
 * write fault per page (first access is a write), then read everything back. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 64);
    size_t len = n * PAGE_SIZE;
    u8 *p = sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die_errno("anon_touch: mmap", (long)p);

    for (u64 i = 0; i < n; i++)
        ((volatile u8 *)p)[i * PAGE_SIZE + (i * 64) % PAGE_SIZE] = (u8)((i * 7 + 1) & 0xff);

    u64 sum = 0;
    for (u64 i = 0; i < n; i++) {
        u8 v = ((volatile u8 *)p)[i * PAGE_SIZE + (i * 64) % PAGE_SIZE];
        if (v != (u8)((i * 7 + 1) & 0xff)) {
            eprintf("anon_touch: page %lu: got %u want %u\n",
                    (unsigned long)i, v, (unsigned)((i * 7 + 1) & 0xff));
            return 1;
        }
        sum += v;
    }
    printf("anon_touch: pages=%lu checksum=%lu\n", (unsigned long)n, (unsigned long)sum);
    long r = sys_munmap(p, len);
    if (r < 0)
        die_errno("anon_touch: munmap", r);
    return 0;
}
