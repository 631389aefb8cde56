/* qsort, bsearch and <string.h>/<stdlib.h> routines (glibc's optimised
 * string functions, strtok, snprintf, strtol), then fork(): the child checks
 * its copy-on-write view of the sorted array and dies in a failed assert()
 * (abort: SIGABRT), which the parent reports from waitpid(). Argument: how
 * many numbers to sort (default 20000). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    if (n < 1)
        n = 20000;
    int *v = malloc((size_t)n * sizeof *v);
    unsigned x = 12345;
    for (int i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        v[i] = (int)(x >> 8) % 100000;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_int);
    int sorted = 1;
    long long sum = 0;
    for (int i = 0; i < n; i++) {
        sum += v[i];
        if (i && v[i - 1] > v[i])
            sorted = 0;
    }
    int key = v[n / 3];
    int *hit = bsearch(&key, v, (size_t)n, sizeof *v, cmp_int);
    printf("sorted %d ints: %s, min %d, median %d, max %d, sum %lld, bsearch %s\n", n,
           sorted ? "ok" : "WRONG", v[0], v[n / 2], v[n - 1], sum, hit ? "found" : "missing");

    fflush(stdout); /* or the child would inherit the buffered lines */
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        long long csum = 0;
        for (int i = 0; i < n; i++)
            csum += v[i];
        v[0] = -1; /* a private copy: the parent must not see this */
        printf("child: same sum %s, pid differs from parent %s\n", csum == sum ? "yes" : "no",
               getpid() != getppid() ? "yes" : "no");
        fflush(stdout);
        assert(v[0] == v[1]); /* fails: abort() */
        return 0;
    }
    int status;
    if (waitpid(child, &status, 0) != child) {
        perror("waitpid");
        return 1;
    }
    printf("parent: v[0] still %d, child %s %d\n", v[0],
           WIFSIGNALED(status) ? "killed by signal" : "exited with", WIFSIGNALED(status) ?
           WTERMSIG(status) : WEXITSTATUS(status));
    free(v);

    char text[] = "the quick brown fox jumps over the lazy dog and then the fox sleeps";
    char *words[32];
    int nw = 0;
    for (char *t = strtok(text, " "); t && nw < 32; t = strtok(NULL, " "))
        words[nw++] = t;
    qsort(words, (size_t)nw, sizeof *words, cmp_str);
    char line[256] = "";
    for (int i = 0; i < nw; i++) {
        if (i && strcmp(words[i], words[i - 1]) == 0)
            continue;
        strcat(line, words[i]);
        strcat(line, i + 1 < nw ? "," : "");
    }
    printf("%d words, unique sorted: %s\n", nw, line);

    char buf[64];
    int len = snprintf(buf, sizeof buf, "%s-%05d-%x", "id", 42, 48879);
    long parsed = strtol("  -0x7fff rest", NULL, 16);
    printf("snprintf \"%s\" (%d), strtol %ld, strstr %s, memchr %s\n", buf, len, parsed,
           strstr("haystack with needle", "needle"), (char *)memchr("abcdef", 'd', 6));
    return 0;
}
