/* printf through the C library's stdio: integers, strings, a double, a long
 * double, argv. The exit status is the number of arguments. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *slash = strrchr(argv[0], '/');
    printf("hello from %s, through stdio\n", slash ? slash + 1 : argv[0]);
    printf("ints: %d %u %ld %x %#llx\n", -42, 42u, -1234567890123L, 0xbeef, 0x123456789abcULL);
    printf("padded: [%8s] [%-8s] [%08.3f] [%+.2e]\n", "right", "left", 3.14159, 12345.678);
    /* x87 extended precision on x86-64 (binary128 in software on arm64). The
     * conversion to int reloads the x87 control word with its rounding bits
     * changed, so a wrong initial control word shows in the next division. */
    volatile long double num = argc + 9, den = 3;
    int whole = (int)(num / den);
    printf("long double: %d + %.19Lf\n", whole, num / den - whole);
    for (int i = 1; i < argc; i++)
        printf("argv[%d] = \"%s\" (%zu bytes)\n", i, argv[i], strlen(argv[i]));
    puts("puts works too");
    fputs("stderr is unbuffered\n", stderr);
    return argc - 1;
}
