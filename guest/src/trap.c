/* trap: __builtin_trap() -> x86-64 ud2 (do_invalid_op: SIGILL, status 132),
 * arm64 brk #0x3e8 (brk_handler: SIGTRAP, status 133). The kernel kills the
 * task with the signal; mmuemu must report it the same way, never crash. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    print_str(STDOUT_FILENO, "trap: about to trap\n");
    __builtin_trap();
}
