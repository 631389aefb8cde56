/* rw_loop N: write N pages to ./rw.dat with write() in 1000-byte pieces,
 * rewrite a few ranges with pwrite(), fsync, read it all back with read() in
 * 3000-byte pieces and pread(), truncate it to half, check the size with
 * fstat and lseek, print a checksum. The file is left behind. */
#include "rt.h"

static u8 buf[3000];

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    u64 n = arg_u64(argc, argv, 1, 16);
    u64 len = n * PAGE_SIZE;
    long fd = sys_openat(AT_FDCWD, "rw.dat", O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die_errno("rw_loop: openat", fd);
    for (u64 off = 0; off < len; off += 1000) {
        u64 k = len - off < 1000 ? len - off : 1000;
        for (u64 j = 0; j < k; j++)
            buf[j] = (u8)((off + j) * 7 >> 3);
        if (sys_write((int)fd, buf, k) != (long)k)
            die("rw_loop: short write");
    }
    for (u64 i = 0; i < n; i += 3) {
        memset(buf, 0x5a, 10);
        if (sys_pwrite64((int)fd, buf, 10, (long)(i * PAGE_SIZE + 4090)) != 10)
            die("rw_loop: pwrite");
    }
    if (sys_fsync((int)fd) < 0)
        die("rw_loop: fsync");
    if (sys_lseek((int)fd, 0, SEEK_SET) != 0)
        die("rw_loop: lseek");
    u64 sum = 0, total = 0;
    for (;;) {
        long r = sys_read((int)fd, buf, sizeof(buf));
        if (r < 0)
            die_errno("rw_loop: read", r);
        if (r == 0)
            break;
        for (long j = 0; j < r; j++)
            sum += buf[j] * ((total + (u64)j) % 251 + 1);
        total += (u64)r;
    }
    if (sys_ftruncate((int)fd, (long)(len / 2)) < 0)
        die("rw_loop: ftruncate");
    struct stat st;
    if (sys_fstat((int)fd, &st) < 0)
        die("rw_loop: fstat");
    long end = sys_lseek((int)fd, 0, SEEK_END);
    sys_close((int)fd);
    fdprintf(STDOUT_FILENO, "rw_loop: bytes=%lu checksum=%lu size=%ld end=%ld\n",
             (unsigned long)total, (unsigned long)sum, (long)st.st_size, end);
    return 0;
}
