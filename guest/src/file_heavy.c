/* file_heavy [FILE [PAGES [PASSES]]]: create FILE (default file_heavy.dat)
 * with PAGES pages (default 1024) written by write(2) in 64 KiB chunks, then
 * PASSES times (default 3): map it PROT_READ, MAP_SHARED and check every word
 * (file read faults through the page cache), read(2) it all in 64 KiB chunks
 * and check it, map it MAP_SHARED read/write and change word `pass` of every
 * page (shared write faults, dirty page-cache pages), msync(MS_SYNC), unmap,
 * and read(2) it all again to check the change reached the file. Each pass
 * prints the checksums of its mmap scan, its read(2) scan and its check after
 * the change. The file is unlinked at the end.
 * Expected kernel behaviour: under --mem smaller than the file, clean page
 * cache pages are dropped (after writeback, for the dirtied ones) and the
 * next access refaults them from the file (major faults, readahead); no page
 * may come back stale. Output depends only on PAGES and PASSES. */
#include "rt.h"

#define WORDS  (PAGE_SIZE / 8)
#define STEP   0x165667b19e3779f9ULL
#define CHUNK  16                       /* pages per read/write: 64 KiB */

static u64 buf[CHUNK * WORDS];

static u64 base(u64 i, u64 pat)
{
    u64 x = (i + 1) * 0x9e3779b97f4a7c15ULL ^ (pat + 1) * 0xc2b2ae3d27d4eb4fULL;
    return x ^ (x >> 29);
}

/* Word w of page i once passes 0..done-1 have changed words 0..done-1. */
static inline u64 expect(u64 i, u64 w, u64 done)
{
    return w < done ? ~base(i, 0x1000 + w) : base(i, 0) + w * STEP;
}

/* Check npages pages from page `first` at p; adds every word to *sum. */
static u64 check(const volatile u64 *p, u64 first, u64 npages, u64 done, u64 *sum)
{
    u64 bad = 0, s = *sum;
    for (u64 k = 0; k < npages; k++) {
        u64 diff = 0;
        for (u64 w = 0; w < WORDS; w++) {
            u64 v = p[k * WORDS + w];
            diff |= v ^ expect(first + k, w, done);
            s = (s << 1 | s >> 63) + v;
        }
        if (diff && bad++ < 4)
            eprintf("file_heavy: page %lu bad (after %lu changes)\n",
                    (unsigned long)(first + k), (unsigned long)done);
    }
    *sum = s;
    return bad;
}

/* read(2) the whole file from offset 0 in CHUNK-page pieces and check it. */
static u64 read_check(int fd, u64 n, u64 done, u64 *sum)
{
    long r = sys_lseek(fd, 0, SEEK_SET);
    if (r != 0)
        die_errno("file_heavy: lseek", r);
    u64 bad = 0;
    for (u64 i = 0; i < n; i += CHUNK) {
        u64 np = n - i < CHUNK ? n - i : CHUNK;
        size_t want = np * PAGE_SIZE, got = 0;
        while (got < want) {
            r = sys_read(fd, (u8 *)buf + got, want - got);
            if (r <= 0)
                die_errno("file_heavy: read", r ? r : -5);
            got += (size_t)r;
        }
        bad += check(buf, i, np, done, sum);
    }
    return bad;
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    const char *path = argc > 1 ? argv[1] : "file_heavy.dat";
    u64 n = arg_u64(argc, argv, 2, 1024);
    u64 passes = arg_u64(argc, argv, 3, 3);
    if (n == 0 || passes > WORDS) {
        eprintf("usage: file_heavy FILE PAGES [PASSES]  (PAGES >= 1, PASSES <= 512)\n");
        return 2;
    }
    size_t len = n * PAGE_SIZE;
    long fd = sys_openat(AT_FDCWD, path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die_errno("file_heavy: openat", fd);
    for (u64 i = 0; i < n; i += CHUNK) {
        u64 np = n - i < CHUNK ? n - i : CHUNK;
        for (u64 k = 0; k < np; k++)
            for (u64 w = 0; w < WORDS; w++)
                buf[k * WORDS + w] = expect(i + k, w, 0);
        if (write_all((int)fd, buf, np * PAGE_SIZE) < 0)
            die("file_heavy: write failed");
    }

    u64 total_bad = 0;
    for (u64 pass = 0; pass < passes; pass++) {
        u64 sm = 0, sr = 0, sv = 0, bad;
        const volatile u64 *m = sys_mmap(NULL, len, PROT_READ, MAP_SHARED, (int)fd, 0);
        if (SYS_ERR(m))
            die_errno("file_heavy: mmap", (long)m);
        bad = check(m, 0, n, pass, &sm);
        sys_munmap((void *)m, len);
        bad += read_check((int)fd, n, pass, &sr);

        volatile u64 *w = sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
        if (SYS_ERR(w))
            die_errno("file_heavy: mmap rw", (long)w);
        for (u64 i = 0; i < n; i++)
            w[i * WORDS + pass] = expect(i, pass, pass + 1);
        long r = sys_msync((void *)w, len, MS_SYNC);
        if (r < 0)
            die_errno("file_heavy: msync", r);
        sys_munmap((void *)w, len);
        bad += read_check((int)fd, n, pass + 1, &sv);

        printf("pass %lu: pages %lu mmap 0x%016lx read 0x%016lx changed 0x%016lx bad %lu\n",
               (unsigned long)pass, (unsigned long)n, (unsigned long)sm,
               (unsigned long)sr, (unsigned long)sv, (unsigned long)bad);
        total_bad += bad;
    }
    sys_close((int)fd);
    long r = sys_unlinkat(AT_FDCWD, path, 0);
    if (r < 0)
        die_errno("file_heavy: unlinkat", r);
    if (total_bad) {
        printf("file_heavy: FAIL %lu bad pages\n", (unsigned long)total_bad);
        return 1;
    }
    printf("file_heavy: OK\n");
    return 0;
}
