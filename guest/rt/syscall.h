/* Raw Linux syscalls for x86-64 and arm64: numbers and inline-asm traps.
 *
 * x86-64: `syscall`, rax = nr, args rdi rsi rdx r10 r8 r9, result rax;
 *         the CPU clobbers rcx and r11.
 * arm64:  `svc #0`,  x8 = nr,  args x0..x5, result x0.
 * A result in [-4095, -1] is -errno (see SYS_ERR()).
 */
#ifndef MMUEMU_RT_SYSCALL_H
#define MMUEMU_RT_SYSCALL_H

#if defined(__x86_64__)
#define SYS_read            0
#define SYS_write           1
#define SYS_close           3
#define SYS_fstat           5
#define SYS_lseek           8
#define SYS_mmap            9
#define SYS_mprotect       10
#define SYS_munmap         11
#define SYS_brk            12
#define SYS_pread64        17
#define SYS_pwrite64       18
#define SYS_mremap         25
#define SYS_msync          26
#define SYS_madvise        28
#define SYS_getpid         39
#define SYS_clone          56
#define SYS_fork           57
#define SYS_exit           60
#define SYS_wait4          61
#define SYS_kill           62
#define SYS_uname          63
#define SYS_fsync          74
#define SYS_ftruncate      77
#define SYS_getrusage      98
#define SYS_getppid       110
#define SYS_clock_gettime 228
#define SYS_exit_group    231
#define SYS_openat        257
#define SYS_newfstatat    262
#define SYS_unlinkat      263


#elif defined(__aarch64__)
/* asm-generic table (no open, no fork: use openat and clone(SIGCHLD)) */
#define SYS_unlinkat       35
#define SYS_ftruncate      46
#define SYS_openat         56
#define SYS_close          57
#define SYS_lseek          62
#define SYS_read           63
#define SYS_write          64
#define SYS_pread64        67
#define SYS_pwrite64       68
#define SYS_newfstatat     79
#define SYS_fstat          80
#define SYS_fsync          82
#define SYS_exit           93
#define SYS_exit_group     94
#define SYS_clock_gettime 113
#define SYS_kill          129
#define SYS_uname         160
#define SYS_getrusage     165
#define SYS_getpid        172
#define SYS_getppid       173
#define SYS_brk           214
#define SYS_munmap        215
#define SYS_mremap        216
#define SYS_clone         220
#define SYS_mmap          222
#define SYS_mprotect      226
#define SYS_msync         227
#define SYS_madvise       233
#define SYS_wait4         260


#else
#error "mmuemu guest runtime supports only x86-64 and arm64"
#endif

#define SYS_ERR(r) ((unsigned long)(long)(r) >= (unsigned long)-4095L)

#if defined(__x86_64__)
static inline long __syscall6(long n, long a0, long a1, long a2,
                              long a3, long a4, long a5)
{
    register long rax __asm__("rax") = n;
    register long rdi __asm__("rdi") = a0;
    register long rsi __asm__("rsi") = a1;
    register long rdx __asm__("rdx") = a2;
    register long r10 __asm__("r10") = a3;
    register long r8 __asm__("r8") = a4;
    register long r9 __asm__("r9") = a5;
    __asm__ volatile("syscall"
                     : "+r"(rax)
                     : "r"(rdi), "r"(rsi), "r"(rdx), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return rax;
}
#else
static inline long __syscall6(long n, long a0, long a1, long a2,
                              long a3, long a4, long a5)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a0;
    register long x1 __asm__("x1") = a1;
    register long x2 __asm__("x2") = a2;
    register long x3 __asm__("x3") = a3;
    register long x4 __asm__("x4") = a4;
    register long x5 __asm__("x5") = a5;
    __asm__ volatile("svc #0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
#endif

#define syscall0(n)                   __syscall6((n), 0, 0, 0, 0, 0, 0)
#define syscall1(n, a)                __syscall6((n), (long)(a), 0, 0, 0, 0, 0)
#define syscall2(n, a, b)             __syscall6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define syscall3(n, a, b, c)          __syscall6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define syscall4(n, a, b, c, d)       __syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define syscall5(n, a, b, c, d, e)    __syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)
#define syscall6(n, a, b, c, d, e, f) __syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

#endif
