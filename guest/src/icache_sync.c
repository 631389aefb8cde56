/* icache_sync ROUNDS [remap]: generate code at run time, as a JIT does.
 *
 * Each round writes a two-instruction function returning 1000 + round into an
 * anonymous page mapped read-write, makes the page read+execute with mprotect,
 * makes the instruction cache see the new code, calls the function and checks
 * what it returns, then makes the page writable again. With "remap" every
 * round uses a new page (munmap + mmap) instead of rewriting the same one.
 *
 * arm64: instruction fetch does not see stores until the code is cleaned from
 * the D-cache to the point of unification and invalidated from the I-cache,
 * so the program issues, for the code's one cache line, the sequence GCC's
 * __builtin___clear_cache uses: dc cvau, dsb ish, ic ivau, dsb ish, isb. The
 * kernel synchronises a page itself only when it maps a page it wrote or
 * allocated (__sync_icache_dcache): the first round's page, and with "remap"
 * every round's, but not the same page rewritten by the program.
 * x86-64: stores snoop the instruction cache; the program still writes the
 * line back with clflush (counted, not needed). */
#include "rt.h"

#define CODE_LINE 64

static void make_code(volatile u32 *code, u32 value)
{
#if defined(__aarch64__)
    code[0] = 0x52800000u | ((value & 0xFFFFu) << 5);   /* movz w0, #value */
    code[1] = 0xD65F03C0u;                              /* ret */
#else
    volatile u8 *b = (volatile u8 *)code;
    b[0] = 0xB8;                                        /* mov eax, imm32 */
    b[1] = (u8)value;
    b[2] = (u8)(value >> 8);
    b[3] = (u8)(value >> 16);
    b[4] = (u8)(value >> 24);
    b[5] = 0xC3;                                        /* ret */
#endif
}

/* Make the line at p coherent for instruction fetch. */
static void sync_line(void *p)
{
#if defined(__aarch64__)
    __asm__ volatile("dc cvau, %0\n\t"
                     "dsb ish\n\t"
                     "ic ivau, %0\n\t"
                     "dsb ish\n\t"
                     "isb" : : "r"(p) : "memory");
#else
    __asm__ volatile("clflush (%0)" : : "r"(p) : "memory");
#endif
}

static volatile u32 *map_page(void)
{
    void *p = sys_mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die("icache_sync: mmap");
    return p;
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 rounds = arg_u64(argc, argv, 1, 3);
    int remap = argc > 2 && argv[2][0] == 'r';
    volatile u32 *code = map_page();
    u64 sum = 0;
    for (u64 r = 0; r < rounds; r++) {
        if (remap && r > 0) {
            sys_munmap((void *)code, PAGE_SIZE);
            code = map_page();
        }
        u32 want = 1000 + (u32)r;
        make_code(code, want);
        long e = sys_mprotect((void *)code, PAGE_SIZE, PROT_READ | PROT_EXEC);
        if (e < 0)
            die_errno("icache_sync: mprotect RX", e);
        sync_line((void *)code);
        u32 (*fn)(void) = (u32 (*)(void))(unsigned long)code;
        u32 got = fn();
        if (got != want) {
            printf("icache_sync: round %lu returned %u, expected %u\n", (unsigned long)r,
                   got, want);
            return 1;
        }
        sum += got;
        e = sys_mprotect((void *)code, PAGE_SIZE, PROT_READ | PROT_WRITE);
        if (e < 0)
            die_errno("icache_sync: mprotect RW", e);
    }
    printf("icache_sync: rounds=%lu %s sum=%lu line=%d\n", (unsigned long)rounds,
           remap ? "remap" : "same-page", (unsigned long)sum, CODE_LINE);
    return 0;
}
