/* compute N: N iterations (default 1000000) of register-only integer
 * arithmetic, no memory traffic and no faults: raw CPU emulation speed. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 1000000);
    u64 x = 0x9e3779b97f4a7c15ULL, acc = 0;
    for (u64 i = 0; i < n; i++) {
        x ^= x << 13;               /* xorshift64 */
        x ^= x >> 7;
        x ^= x << 17;
        acc += (x >> 11) * (i | 1) + (acc >> 3);
    }
    printf("compute: n=%lu result=0x%016lx\n", (unsigned long)n, (unsigned long)acc);
    return 0;
}
