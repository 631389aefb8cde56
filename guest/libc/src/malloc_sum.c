/* glibc malloc: small chunks from the brk heap, large ones (above the mmap
 * threshold) from mmap, realloc growing a block (mremap), calloc's zeroed
 * memory and free. Prints a checksum of everything it wrote. Argument: MiB
 * for the large block (default 4). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3ULL;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 4;
    uint64_t h = 0xcbf29ce484222325ULL;
    if (mib == 0 || mib > 256)
        mib = 4;

    /* many small blocks: the brk heap, tcache and fastbins */
    enum { NSMALL = 2000 };
    char **small = malloc(NSMALL * sizeof *small);
    for (int i = 0; i < NSMALL; i++) {
        size_t n = 16 + (i * 37) % 500;
        small[i] = malloc(n);
        memset(small[i], i & 0xff, n);
    }
    for (int i = 0; i < NSMALL; i += 2) {
        free(small[i]);
        small[i] = NULL;
    }
    for (int i = 1; i < NSMALL; i += 2)
        h = mix(h, (unsigned char)small[i][(i * 7) % 16]);

    /* one large block: mmap'ed, one write per page */
    size_t big = mib << 20;
    unsigned char *p = malloc(big);
    if (!p) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < big; i += 4096)
        p[i] = (unsigned char)(i >> 12);
    for (size_t i = 0; i < big; i += 4096)
        h = mix(h, p[i]);

    /* realloc doubles it (mremap for an mmap'ed chunk); the old bytes survive */
    p = realloc(p, big * 2);
    if (!p) {
        perror("realloc");
        return 1;
    }
    for (size_t i = big; i < 2 * big; i += 4096)
        p[i] = 0x5a;
    for (size_t i = 0; i < 2 * big; i += 8192)
        h = mix(h, p[i]);
    free(p);

    /* calloc must hand back zeroes, also for reused memory */
    uint32_t *z = calloc(1 << 16, sizeof *z);
    uint64_t zsum = 0;
    for (int i = 0; i < 1 << 16; i++)
        zsum += z[i];
    free(z);

    for (int i = 1; i < NSMALL; i += 2)
        free(small[i]);
    free(small);
    printf("malloc_sum: %zu MiB, checksum %016llx, calloc sum %llu\n", mib,
           (unsigned long long)h, (unsigned long long)zsum);
    return 0;
}
