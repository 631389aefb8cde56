/* segv: write to unmapped address 0x10 -> page fault with no VMA -> SIGSEGV
 * (killed by signal 11; a shell reports status 139). */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    uintptr_t addr = 0x10;
    __asm__("" : "+r"(addr));       /* hide the constant from the compiler */
    print_str(STDOUT_FILENO, "segv: about to write to 0x10\n");
    *(volatile int *)addr = 1;
    print_str(STDERR_FILENO, "segv: write to 0x10 did not fault\n");
    return 2;
}
