/* cow_fork N [ROUNDS]: write every page of an N-page (default 1024) private
 * anonymous region, fork, then child and parent each write every page again
 * ROUNDS times (default 1): the first write to each page in each process is
 * a copy-on-write fault (do_wp_page; the last writer of a page may reuse it
 * instead of copying once the other side has its own copy). The child checks
 * that it saw the pre-fork contents and exits; the parent checks its own
 * contents after the child's writes, waits for the child, and prints a
 * checksum. Exit status 1 if anything is wrong, including a failed fork. */
#include "rt.h"

static u8 before(u64 i) { return (u8)((i * 3 + 1) & 0xff); }
static u8 child_val(u64 i, u64 r) { return (u8)((i * 5 + r + 2) & 0xff); }
static u8 parent_val(u64 i, u64 r) { return (u8)((i * 7 + r + 3) & 0xff); }

static u64 off_of(u64 i) { return i * PAGE_SIZE + (i * 64) % PAGE_SIZE; }

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 1024);
    u64 rounds = arg_u64(argc, argv, 2, 1);
    if (rounds == 0) {
        eprintf("cow_fork: ROUNDS must be at least 1\n");
        return 2;
    }
    size_t len = n * PAGE_SIZE;
    volatile u8 *p = sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (SYS_ERR(p))
        die_errno("cow_fork: mmap", (long)p);
    for (u64 i = 0; i < n; i++)
        p[off_of(i)] = before(i);

    long pid = sys_fork();
    if (pid < 0)
        die_errno("cow_fork: fork", pid);
    if (pid == 0) {
        for (u64 i = 0; i < n; i++)
            if (p[off_of(i)] != before(i))
                sys_exit_group(1);
        for (u64 r = 0; r < rounds; r++)
            for (u64 i = 0; i < n; i++)
                p[off_of(i)] = child_val(i, r);
        sys_exit_group(0);
    }

    u64 sum = 0;
    for (u64 r = 0; r < rounds; r++)
        for (u64 i = 0; i < n; i++)
            p[off_of(i)] = parent_val(i, r);
    int status = 0;
    long w = sys_wait4((int)pid, &status, 0, NULL);
    if (w != pid)
        die_errno("cow_fork: wait4", w < 0 ? w : -10 /* ECHILD */);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        eprintf("cow_fork: child failed (status 0x%x)\n", status);
        return 1;
    }
    for (u64 i = 0; i < n; i++) {
        u8 v = p[off_of(i)];
        if (v != parent_val(i, rounds - 1)) {
            eprintf("cow_fork: page %lu: got %u want %u\n", (unsigned long)i, v,
                    parent_val(i, rounds - 1));
            return 1;
        }
        sum += v;
    }
    printf("cow_fork: pages=%lu rounds=%lu checksum=%lu\n", (unsigned long)n,
           (unsigned long)rounds, (unsigned long)sum);
    sys_munmap((void *)p, len);
    return 0;
}
