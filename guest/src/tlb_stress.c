/* tlb_stress W R: mmap W pages (default 64), then R rounds (default 16) of a
 * read-modify-write of one byte in every page in turn: after the first round
 * there are no faults, only translations (TLB hits/misses once W exceeds
 * the TLB). */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 w = arg_u64(argc, argv, 1, 64);
    u64 rounds = arg_u64(argc, argv, 2, 16);
    size_t len = w * PAGE_SIZE;
    volatile u8 *p = sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die_errno("tlb_stress: mmap", (long)p);

    u64 sum = 0;
    for (u64 r = 0; r < rounds; r++) {
        for (u64 i = 0; i < w; i++) {
            volatile u8 *b = p + i * PAGE_SIZE + (i * 64) % PAGE_SIZE;
            u8 v = *b;
            sum += v;
            *b = (u8)(v + i + r + 1);
        }
    }
    printf("tlb_stress: pages=%lu rounds=%lu checksum=%lu\n",
           (unsigned long)w, (unsigned long)rounds, (unsigned long)sum);
    sys_munmap((void *)p, len);
    return 0;
}
