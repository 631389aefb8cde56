/* mmuemu guest runtime: freestanding, no libc, x86-64 and arm64 Linux. */
#ifndef MMUEMU_RT_H
#define MMUEMU_RT_H

#include <stdarg.h>   /* compiler-provided, freestanding */
#include <stddef.h>
#include <stdint.h>

#include "syscall.h"

typedef uint8_t  u8;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t  i64;

#define PAGE_SIZE 4096UL

/* mmap / mprotect */
#define PROT_NONE        0x0
#define PROT_READ        0x1
#define PROT_WRITE       0x2
#define PROT_EXEC        0x4
#define MAP_SHARED       0x01
#define MAP_PRIVATE      0x02
#define MAP_FIXED        0x10
#define MAP_ANONYMOUS    0x20
#define MAP_GROWSDOWN    0x0100
#define MAP_NORESERVE    0x4000
#define MAP_POPULATE     0x8000
#define MAP_FIXED_NOREPLACE 0x100000
#define MAP_FAILED       ((void *)-1)
#define MREMAP_MAYMOVE   1
#define MREMAP_FIXED     2

/* madvise / msync */
#define MADV_NORMAL      0
#define MADV_RANDOM      1
#define MADV_SEQUENTIAL  2
#define MADV_WILLNEED    3
#define MADV_DONTNEED    4
#define MADV_FREE        8
#define MADV_REMOVE      9
#define MADV_DONTFORK    10
#define MADV_DOFORK      11
#define MADV_HUGEPAGE    14
#define MADV_NOHUGEPAGE  15
#define MADV_POPULATE_READ  22
#define MADV_POPULATE_WRITE 23
#define MS_ASYNC         1
#define MS_INVALIDATE    2
#define MS_SYNC          4

/* files (values common to x86-64 and arm64) */
#define O_RDONLY         00
#define O_WRONLY         01
#define O_RDWR           02
#define O_CREAT          0100
#define O_EXCL           0200
#define O_TRUNC          01000
#define O_APPEND         02000
#define O_CLOEXEC        02000000
#define AT_FDCWD         (-100)
#define AT_REMOVEDIR     0x200
#define SEEK_SET         0
#define SEEK_CUR         1
#define SEEK_END         2

/* processes */
#define SIGKILL          9
#define SIGSEGV          11
#define SIGCHLD          17
#define RUSAGE_SELF      0
#define RUSAGE_CHILDREN  (-1)
#define CLOCK_REALTIME   0
#define CLOCK_MONOTONIC  1

#define STDIN_FILENO     0
#define STDOUT_FILENO    1
#define STDERR_FILENO    2

struct timeval  { long tv_sec; long tv_usec; };
struct timespec { long tv_sec; long tv_nsec; };

struct rusage {
    struct timeval ru_utime;
    struct timeval ru_stime;
    long ru_maxrss, ru_ixrss, ru_idrss, ru_isrss;
    long ru_minflt, ru_majflt, ru_nswap, ru_inblock, ru_oublock;
    long ru_msgsnd, ru_msgrcv, ru_nsignals, ru_nvcsw, ru_nivcsw;
};

struct utsname {
    char sysname[65], nodename[65], release[65];
    char version[65], machine[65], domainname[65];
};

#if defined(__x86_64__)
struct stat {                       /* arch/x86/include/uapi/asm/stat.h */
    unsigned long st_dev, st_ino, st_nlink;
    unsigned int st_mode, st_uid, st_gid, __pad0;
    unsigned long st_rdev;
    long st_size, st_blksize, st_blocks;
    unsigned long st_atime, st_atime_nsec;
    unsigned long st_mtime, st_mtime_nsec;
    unsigned long st_ctime, st_ctime_nsec;
    long __unused[3];
};
#else
struct stat {                       /* include/uapi/asm-generic/stat.h */
    unsigned long st_dev, st_ino;
    unsigned int st_mode, st_nlink, st_uid, st_gid;
    unsigned long st_rdev, __pad1;
    long st_size;
    int st_blksize, __pad2;
    long st_blocks;
    long st_atime; unsigned long st_atime_nsec;
    long st_mtime; unsigned long st_mtime_nsec;
    long st_ctime; unsigned long st_ctime_nsec;
    unsigned int __unused4, __unused5;
};
#endif

/* Syscall wrappers: each returns the raw kernel result (-errno on error). */
static inline long sys_read(int fd, void *buf, size_t n)        { return syscall3(SYS_read, fd, buf, n); }
static inline long sys_write(int fd, const void *buf, size_t n) { return syscall3(SYS_write, fd, buf, n); }
static inline long sys_openat(int dfd, const char *path, int flags, int mode)
                                                                { return syscall4(SYS_openat, dfd, path, flags, mode); }
static inline long sys_close(int fd)                            { return syscall1(SYS_close, fd); }
static inline long sys_lseek(int fd, long off, int whence)      { return syscall3(SYS_lseek, fd, off, whence); }
static inline long sys_fstat(int fd, struct stat *st)           { return syscall2(SYS_fstat, fd, st); }
static inline long sys_newfstatat(int dfd, const char *path, struct stat *st, int flags)
                                                                { return syscall4(SYS_newfstatat, dfd, path, st, flags); }
static inline long sys_pread64(int fd, void *buf, size_t n, long off)
                                                                { return syscall4(SYS_pread64, fd, buf, n, off); }
static inline long sys_pwrite64(int fd, const void *buf, size_t n, long off)
                                                                { return syscall4(SYS_pwrite64, fd, buf, n, off); }
static inline long sys_fsync(int fd)                            { return syscall1(SYS_fsync, fd); }
static inline long sys_ftruncate(int fd, long len)              { return syscall2(SYS_ftruncate, fd, len); }
static inline long sys_unlinkat(int dfd, const char *path, int flags)
                                                                { return syscall3(SYS_unlinkat, dfd, path, flags); }
static inline void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
                                                                { return (void *)syscall6(SYS_mmap, addr, len, prot, flags, fd, off); }
static inline long sys_munmap(void *addr, size_t len)           { return syscall2(SYS_munmap, addr, len); }
static inline long sys_mprotect(void *addr, size_t len, int prot)
                                                                { return syscall3(SYS_mprotect, addr, len, prot); }
static inline void *sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
                                                                { return (void *)syscall5(SYS_mremap, old, old_len, new_len, flags, new_addr); }
static inline long sys_madvise(void *addr, size_t len, int advice)
                                                                { return syscall3(SYS_madvise, addr, len, advice); }
static inline long sys_msync(void *addr, size_t len, int flags) { return syscall3(SYS_msync, addr, len, flags); }
/* brk returns the new break on success and the old one on failure. */
static inline unsigned long sys_brk(unsigned long addr)         { return (unsigned long)syscall1(SYS_brk, addr); }
static inline long sys_getpid(void)                             { return syscall0(SYS_getpid); }
static inline long sys_getppid(void)                            { return syscall0(SYS_getppid); }
static inline long sys_kill(int pid, int sig)                   { return syscall2(SYS_kill, pid, sig); }
static inline long sys_wait4(int pid, int *status, int options, struct rusage *ru)
                                                                { return syscall4(SYS_wait4, pid, status, options, ru); }
static inline long sys_uname(struct utsname *u)                 { return syscall1(SYS_uname, u); }
static inline long sys_clock_gettime(int clk, struct timespec *ts)
                                                                { return syscall2(SYS_clock_gettime, clk, ts); }
static inline long sys_getrusage(int who, struct rusage *ru)    { return syscall2(SYS_getrusage, who, ru); }
/* fork(): x86-64 has fork(57); arm64 only clone(220) with SIGCHLD. */
static inline long sys_fork(void)
{
#if defined(__x86_64__)
    return syscall0(SYS_fork);
#else
    return syscall5(SYS_clone, SIGCHLD, 0, 0, 0, 0);
#endif
}
__attribute__((noreturn)) static inline void sys_exit(int code)
{
    syscall1(SYS_exit, code);
    __builtin_unreachable();
}
__attribute__((noreturn)) static inline void sys_exit_group(int code)
{
    syscall1(SYS_exit_group, code);
    __builtin_unreachable();
}

/* wait4 status decoding */
#define WIFEXITED(s)    (((s) & 0x7f) == 0)
#define WEXITSTATUS(s)  (((s) >> 8) & 0xff)
#define WIFSIGNALED(s)  (((s) & 0x7f) != 0 && ((s) & 0x7f) != 0x7f)
#define WTERMSIG(s)     ((s) & 0x7f)

/* rt.c: string/memory helpers (also what gcc may call implicitly) */
size_t strlen(const char *s);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* Parse decimal or 0x-hex unsigned; returns 0 on success, -1 if malformed. */
int parse_u64(const char *s, u64 *out);
/* argv[idx] parsed as unsigned, or dflt if absent; die()s if malformed. */
u64 arg_u64(int argc, char **argv, int idx, u64 dflt);
int atoi(const char *s);

/* Environment (set by _start from the initial stack). */
extern char **environ;
const char *getenv(const char *name);

/* Output: all return 0 on success, -1 on write error. */
int write_all(int fd, const void *buf, size_t n);
int print_str(int fd, const char *s);
int print_u64(int fd, u64 v);
int print_i64(int fd, i64 v);
int print_hex(int fd, u64 v);               /* "0x" followed by lowercase hex */
/* %s %c %d %i %u %x %p %% with l/ll/z, flags '0' and '-', and a width. */
int fdprintf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int vfdprintf(int fd, const char *fmt, va_list ap);
#define printf(...)  fdprintf(STDOUT_FILENO, __VA_ARGS__)
#define eprintf(...) fdprintf(STDERR_FILENO, __VA_ARGS__)

/* Print "msg\n" to stderr and exit_group(1). */
__attribute__((noreturn)) void die(const char *msg);
/* Print "what: error <-ret>\n" to stderr and exit_group(1). */
__attribute__((noreturn)) void die_errno(const char *what, long ret);

int main(int argc, char **argv, char **envp);

#endif
