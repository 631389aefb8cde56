/* args: print argc, each argument and $MMUEMU_TEST (if set).
 * argv[0] is printed as its basename so output does not depend on the path
 * the program was started with. */
#include "rt.h"

static const char *basename(const char *p)
{
    const char *b = p;
    for (; *p; p++)
        if (*p == '/')
            b = p + 1;
    return b;
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, i ? argv[i] : basename(argv[0]));
    if (argv[argc] != NULL)
        die("args: argv is not NULL-terminated");
    const char *t = getenv("MMUEMU_TEST");
    if (t)
        printf("MMUEMU_TEST=%s\n", t);
    return 0;
}
