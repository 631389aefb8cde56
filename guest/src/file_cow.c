/* file_cow N: write N pages to ./cow.dat, map it MAP_PRIVATE read/write,
 * read every page (file read faults), then write every page (COW faults:
 * do_wp_page copies the page-cache page), and check with pread() that the
 * file itself never changed. Removes the file. */
#include "rt.h"

static u8 page[PAGE_SIZE];

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 16);
    long fd = sys_openat(AT_FDCWD, "cow.dat", O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die_errno("file_cow: openat", fd);
    for (u64 i = 0; i < n; i++) {
        memset(page, (int)(i & 0xff), PAGE_SIZE);
        if (sys_write((int)fd, page, PAGE_SIZE) != (long)PAGE_SIZE)
            die("file_cow: short write");
    }
    volatile u8 *p = sys_mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, (int)fd, 0);
    if (SYS_ERR(p))
        die_errno("file_cow: mmap", (long)p);
    u64 sum = 0;
    for (u64 i = 0; i < n; i++)
        sum += p[i * PAGE_SIZE];
    for (u64 i = 0; i < n; i++)
        p[i * PAGE_SIZE + 1] = 0xee;
    for (u64 i = 0; i < n; i++)
        sum += p[i * PAGE_SIZE + 1];
    for (u64 i = 0; i < n; i++) {
        u8 b[2];
        if (sys_pread64((int)fd, b, 2, (long)(i * PAGE_SIZE)) != 2 || b[1] != (u8)(i & 0xff))
            die("file_cow: the private write reached the file");
    }
    sys_munmap((void *)p, n * PAGE_SIZE);
    sys_close((int)fd);
    sys_unlinkat(AT_FDCWD, "cow.dat", 0);
    fdprintf(STDOUT_FILENO, "file_cow: pages=%lu checksum=%lu\n", (unsigned long)n,
             (unsigned long)sum);
    return 0;
}
