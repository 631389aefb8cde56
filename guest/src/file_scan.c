/* file_scan PATH [PASSES [STRIDE]]: map an existing file PROT_READ,
 * MAP_PRIVATE and read one 8-byte word every STRIDE bytes (default 64) of it,
 * PASSES times (default 4). Each pass maps the file afresh and unmaps it at the
 * end, so every pass takes file-backed read faults through the page cache
 * (do_read_fault with fault-around) and then reads the pages it mapped.
 * Prints the size and a checksum of the words read. */
#include "rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    if (argc < 2) {
        eprintf("usage: file_scan PATH [PASSES [STRIDE]]\n");
        return 2;
    }
    const char *path = argv[1];
    u64 passes = arg_u64(argc, argv, 2, 4);
    u64 stride = arg_u64(argc, argv, 3, 64);
    if (stride < 8 || stride % 8) {
        eprintf("file_scan: STRIDE must be a multiple of 8\n");
        return 2;
    }
    long fd = sys_openat(AT_FDCWD, path, O_RDONLY, 0);
    if (fd < 0)
        die_errno("file_scan: openat", fd);
    struct stat st;
    long r = sys_fstat((int)fd, &st);
    if (r < 0)
        die_errno("file_scan: fstat", r);
    size_t len = (size_t)st.st_size & ~7UL;
    if (len == 0)
        die("file_scan: file is empty");

    u64 sum = 0;
    for (u64 pass = 0; pass < passes; pass++) {
        const volatile u64 *p = sys_mmap(NULL, len, PROT_READ, MAP_PRIVATE, (int)fd, 0);
        if (SYS_ERR(p))
            die_errno("file_scan: mmap", (long)p);
        for (size_t off = 0; off < len; off += stride)
            sum += p[off / 8] ^ pass;
        r = sys_munmap((void *)p, len);
        if (r < 0)
            die_errno("file_scan: munmap", r);
    }
    sys_close((int)fd);
    printf("file_scan: bytes=%lu passes=%lu stride=%lu checksum=%lu\n",
           (unsigned long)len, (unsigned long)passes, (unsigned long)stride,
           (unsigned long)sum);
    return 0;
}
