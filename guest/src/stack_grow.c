/* stack_grow DEPTH: recursion DEPTH deep (default 2000) with a 512-byte
 * volatile array per frame: >1 MiB of stack, far past the initial stack VMA,
 * so the kernel must expand the stack VMA downwards on faults below it. */
#include "rt.h"

#define FRAME 512

static u64 __attribute__((noinline)) recurse(u64 depth)
{
    volatile u8 buf[FRAME];
    for (unsigned i = 0; i < FRAME; i += 64)
        buf[i] = (u8)(depth + i);
    u64 s = depth ? recurse(depth - 1) : 0;
    /* use the frame after the call returns: no tail call, frames coexist */
    for (unsigned i = 0; i < FRAME; i += 64)
        s += buf[i];
    return s;
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 depth = arg_u64(argc, argv, 1, 2000);
    printf("stack_grow: depth=%lu sum=%lu\n", (unsigned long)depth,
           (unsigned long)recurse(depth));
    return 0;
}
