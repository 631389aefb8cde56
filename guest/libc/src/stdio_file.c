/* glibc FILE I/O in the current directory (the sandbox root under mmuemu):
 * fopen/fprintf/fclose, then fopen/fgets/fscanf/fseek/ftell/fread, stat, and
 * remove. Nothing is left behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NAME "stdio_file.dat"

int main(int argc, char **argv)
{
    int lines = argc > 1 ? atoi(argv[1]) : 500;
    if (lines < 20 || lines > 99999)
        lines = 500;
    FILE *f = fopen(NAME, "w");
    if (!f) {
        perror("fopen w");
        return 1;
    }
    for (int i = 0; i < lines; i++)
        fprintf(f, "line %5d value %d\n", i, i * i % 9973);
    if (fclose(f) != 0) {
        perror("fclose");
        return 1;
    }

    struct stat st;
    if (stat(NAME, &st) != 0) {
        perror("stat");
        return 1;
    }
    printf("wrote %d lines, %lld bytes, regular file: %s\n", lines,
           (long long)st.st_size, S_ISREG(st.st_mode) ? "yes" : "no");

    f = fopen(NAME, "r");
    if (!f) {
        perror("fopen r");
        return 1;
    }
    char buf[128];
    long sum = 0;
    int n = 0, idx, val;
    while (fgets(buf, sizeof buf, f)) {
        if (sscanf(buf, "line %d value %d", &idx, &val) == 2 && idx == n) {
            sum += val;
            n++;
        }
    }
    printf("read back %d lines, value sum %ld\n", n, sum);

    /* random access: the 10th line from the end */
    long pos = (long)(lines - 10) * (long)strlen("line 00000 value 0\n");
    fseek(f, 0, SEEK_END);
    long end = ftell(f);
    rewind(f);
    long off = 0;
    for (int i = 0; i < lines - 10; i++)
        if (fgets(buf, sizeof buf, f))
            off += (long)strlen(buf);
    fseek(f, off, SEEK_SET);
    size_t got = fread(buf, 1, 17, f);
    buf[got] = '\0';
    printf("size %ld, line %d starts at %ld (not %ld): \"%s\"\n", end, lines - 10, off, pos, buf);
    fclose(f);

    if (remove(NAME) != 0) {
        perror("remove");
        return 1;
    }
    printf("removed: %s\n", fopen(NAME, "r") == NULL ? "yes" : "no");
    return 0;
}
