/* file_shared N: create ./shared.dat of N pages (ftruncate), map it
 * MAP_SHARED read/write, write one byte per page (shared write faults:
 * do_shared_fault / page_mkwrite), msync(MS_SYNC), write again (the clean
 * PTEs fault again), munmap, then read the file back with pread() and print
 * a checksum. The file is left behind: its bytes are the result. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 16);
    long fd = sys_openat(AT_FDCWD, "shared.dat", O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die_errno("file_shared: openat", fd);
    long r = sys_ftruncate((int)fd, (long)(n * PAGE_SIZE));
    if (r < 0)
        die_errno("file_shared: ftruncate", r);
    volatile u8 *p = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
    if (SYS_ERR(p))
        die_errno("file_shared: mmap", (long)p);
    for (u64 i = 0; i < n; i++)
        p[i * PAGE_SIZE + (i % 64)] = (u8)(i * 3 + 1);
    r = sys_msync((void *)p, n * PAGE_SIZE, MS_SYNC);
    if (r < 0)
        die_errno("file_shared: msync", r);
    for (u64 i = 0; i < n; i += 2)
        p[i * PAGE_SIZE + 100] = (u8)(i + 7);
    sys_munmap((void *)p, n * PAGE_SIZE);
    u64 sum = 0;
    u8 buf[256];
    for (u64 i = 0; i < n; i++) {
        r = sys_pread64((int)fd, buf, sizeof(buf), (long)(i * PAGE_SIZE));
        if (r != (long)sizeof(buf))
            die_errno("file_shared: pread", r < 0 ? r : -5);
        for (u64 j = 0; j < sizeof(buf); j++)
            sum += buf[j] * (j + 1);
    }
    sys_close((int)fd);
    fdprintf(STDOUT_FILENO, "file_shared: pages=%lu checksum=%lu\n", (unsigned long)n,
             (unsigned long)sum);
    return 0;
}
