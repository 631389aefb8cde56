/* hello: the smallest program -- one write(1) and exit_group(0). */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    static const char msg[] = "hello, world\n";
    return write_all(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0;
}
