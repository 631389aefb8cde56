/* file_read N: write N pages (default 32) to ./file_read.dat with write(),
 * mmap it PROT_READ MAP_PRIVATE and read one byte per page (file-backed read
 * faults through the page cache), then munmap, close and unlink it. */
#include "rt.h"

static const char path[] = "file_read.dat";
static u8 page[PAGE_SIZE];

static u8 expect(u64 i, u64 j) { return (u8)((i + j * 13) & 0xff); }

static void fail(const char *what, long r)
{
    sys_unlinkat(AT_FDCWD, path, 0);
    die_errno(what, r);
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 32);
    size_t len = n * PAGE_SIZE;
    long fd = sys_openat(AT_FDCWD, path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die_errno("file_read: openat", fd);

    for (u64 i = 0; i < n; i++) {
        for (u64 j = 0; j < PAGE_SIZE; j++)
            page[j] = expect(i, j);
        long r = sys_write((int)fd, page, PAGE_SIZE);
        if (r != (long)PAGE_SIZE)
            fail("file_read: write", r < 0 ? r : -5 /* EIO: short write */);
    }

    volatile u8 *p = sys_mmap(NULL, len, PROT_READ, MAP_PRIVATE, (int)fd, 0);
    if (SYS_ERR(p))
        fail("file_read: mmap", (long)p);

    u64 sum = 0;
    for (u64 i = 0; i < n; i++) {
        u64 off = (i * 8) % PAGE_SIZE;
        u8 v = p[i * PAGE_SIZE + off];
        if (v != expect(i, off)) {
            eprintf("file_read: page %lu: got %u want %u\n",
                    (unsigned long)i, v, expect(i, off));
            sys_unlinkat(AT_FDCWD, path, 0);
            return 1;
        }
        sum += v;
    }
    printf("file_read: pages=%lu checksum=%lu\n", (unsigned long)n, (unsigned long)sum);

    long r = sys_munmap((void *)p, len);
    if (r < 0)
        fail("file_read: munmap", r);
    r = sys_close((int)fd);
    if (r < 0)
        fail("file_read: close", r);
    r = sys_unlinkat(AT_FDCWD, path, 0);
    if (r < 0)
        die_errno("file_read: unlinkat", r);
    return 0;
}
