/* enosys: make a syscall no Linux knows (number 999) and print what came back.
 * Natively and under mmuemu the answer is -ENOSYS (-38); mmuemu also warns
 * once on stderr, or stops the run under --strict. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    long ret = syscall0(999);
    fdprintf(STDOUT_FILENO, "enosys: ret=%ld\n", ret);
    return ret == -38 ? 0 : 1;
}
