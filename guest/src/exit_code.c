/* exit_code N: exit with status N (default 0), printing nothing. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    return (int)(arg_u64(argc, argv, 1, 0) & 0xff);
}
