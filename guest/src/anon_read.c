/* anon_read N: mmap N anonymous pages (default 16); read each first (read
 * fault -> shared zero page, must read 0), then write each (write fault on a
 * present read-only PTE -> copy-on-write away from the zero page), then read
 * back. */
#include "rt.h"

#define OFF(i) ((i) * PAGE_SIZE + ((i) * 128) % PAGE_SIZE)
#define VAL(i) ((u8)(((i) * 3 + 5) & 0xff))

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 16);
    size_t len = n * PAGE_SIZE;
    volatile u8 *p = sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die_errno("anon_read: mmap", (long)p);

    u64 zeros = 0;
    for (u64 i = 0; i < n; i++) {
        u8 v = p[OFF(i)];
        if (v != 0) {
            eprintf("anon_read: page %lu not zero: %u\n", (unsigned long)i, v);
            return 1;
        }
        zeros++;
    }
    for (u64 i = 0; i < n; i++)
        p[OFF(i)] = VAL(i);

    u64 sum = 0;
    for (u64 i = 0; i < n; i++) {
        u8 v = p[OFF(i)];
        if (v != VAL(i)) {
            eprintf("anon_read: page %lu: got %u want %u\n",
                    (unsigned long)i, v, VAL(i));
            return 1;
        }
        /* the neighbouring byte was never written: still zero */
        if (p[OFF(i) ^ 1] != 0) {
            eprintf("anon_read: page %lu: stray data\n", (unsigned long)i);
            return 1;
        }
        sum += v;
    }
    printf("anon_read: pages=%lu zero_reads=%lu checksum=%lu\n",
           (unsigned long)n, (unsigned long)zeros, (unsigned long)sum);
    long r = sys_munmap((void *)p, len);
    if (r < 0)
        die_errno("anon_read: munmap", r);
    return 0;
}
