/* open_path PATH...: try openat(AT_FDCWD, PATH, O_RDONLY) for each argument and
 * print the result: the first bytes of the file, or the negative errno.
 * An argument starting with '+' is created and written instead
 * (O_WRONLY|O_CREAT|O_TRUNC) with the text "written by open_path\n".
 * Used to check that guest paths stay inside mmuemu's --root sandbox. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    for (int i = 1; i < argc; i++) {
        const char *path = argv[i];
        if (path[0] == '+') {
            static const char text[] = "written by open_path\n";
            long fd = sys_openat(AT_FDCWD, path + 1, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0) {
                fdprintf(STDOUT_FILENO, "create %s: %ld\n", path + 1, fd);
                continue;
            }
            long n = sys_write((int)fd, text, sizeof(text) - 1);
            sys_close((int)fd);
            fdprintf(STDOUT_FILENO, "create %s: wrote %ld\n", path + 1, n);
            continue;
        }
        long fd = sys_openat(AT_FDCWD, path, O_RDONLY, 0);
        if (fd < 0) {
            fdprintf(STDOUT_FILENO, "open %s: %ld\n", path, fd);
            continue;
        }
        char buf[33];
        long n = sys_read((int)fd, buf, 32);
        sys_close((int)fd);
        if (n < 0) {
            fdprintf(STDOUT_FILENO, "read %s: %ld\n", path, n);
            continue;
        }
        buf[n] = 0;
        for (long j = 0; j < n; j++)
            if (buf[j] == '\n')
                buf[j] = '|';
        fdprintf(STDOUT_FILENO, "open %s: %s\n", path, buf);
    }
    return 0;
}
