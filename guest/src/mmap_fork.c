/* mmap_fork N: the seeds' experiment. Map /dev/zero MAP_SHARED (N pages,
 * shmem) and touch it, write a variable deep in the stack, fork. The child
 * asks /proc/mtest (mmuemu's inspector; absent on a real kernel, then the
 * requests are skipped) to walk rmap from the shared page (rmap_walk_file:
 * one VMA in each task) and from the stack page (rmap_walk_anon: both tasks,
 * the page is still shared copy-on-write), writes the stack variable (COW)
 * and asks again (only the child now). The parent waits, then asks about its
 * own stack page (only the parent). stdout is the same natively. */
#include "rt.h"

static void mtest(const char *cmd, u64 addr)
{
    long fd = sys_openat(AT_FDCWD, "/proc/mtest", O_WRONLY, 0);
    if (fd < 0)
        return;
    char buf[64];
    int n = 0;
    for (const char *c = cmd; *c; c++)
        buf[n++] = *c;
    buf[n++] = '0';
    buf[n++] = 'x';
    int shift = 60;
    while (shift > 0 && ((addr >> shift) & 0xf) == 0)
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        buf[n++] = "0123456789abcdef"[(addr >> shift) & 0xf];
    buf[n++] = '\n';
    sys_write((int)fd, buf, (u64)n);
    sys_close((int)fd);
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 16);
    volatile char deep[6 * 4096];   /* deep[top] sits pages above the active frames */
    volatile char *var = &deep[sizeof(deep) - 64];
    long fd = sys_openat(AT_FDCWD, "/dev/zero", O_RDWR, 0);
    if (fd < 0)
        die_errno("mmap_fork: open /dev/zero", fd);
    volatile char *shared = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                                     (int)fd, 0);
    if (SYS_ERR(shared))
        die("mmap_fork: mmap");
    shared[0] = 'p';
    *var = 42;
    long pid = sys_fork();
    if (pid < 0)
        die_errno("mmap_fork: fork", pid);
    if (pid == 0) {
        shared[1] = 'c';   /* the child maps the same shmem page */
        mtest("findpage", (u64)shared);
        mtest("findpage", (u64)var);
        *var = 43;
        mtest("findpage", (u64)var);
        sys_exit_group(*var == 43 ? 0 : 1);
    }
    int status = 0;
    if (sys_wait4((int)pid, &status, 0, NULL) != pid)
        die("mmap_fork: wait4");
    mtest("findpage", (u64)var);
    fdprintf(STDOUT_FILENO, "mmap_fork: shared=%c%c var=%d child_status=%d\n", shared[0],
             shared[1], *var, (status >> 8) & 0xff);
    return 0;
}
