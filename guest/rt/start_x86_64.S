/* x86-64 process entry. At entry (Linux ABI): rsp is 16-byte aligned and
 *   0(%rsp) = argc, 8(%rsp) = argv[0..argc-1], NULL, envp[...], NULL, auxv...
 * rdx may hold an atexit pointer from a dynamic loader; we ignore it. */
    .file   "start_x86_64.S"
    .text
    .globl  _start
    .type   _start, @function
_start:
    xor     %ebp, %ebp                  /* outermost frame */
    mov     (%rsp), %rdi                /* argc */
    lea     8(%rsp), %rsi               /* argv */
    lea     16(%rsp,%rdi,8), %rdx       /* envp = argv + argc + 1 */
    mov     %rdx, environ(%rip)
    and     $-16, %rsp                  /* 16-byte aligned before call */
    call    main
    mov     %eax, %edi
    mov     $231, %eax                  /* exit_group(main's return) */
    syscall
    hlt
    .size   _start, . - _start

    .section .note.GNU-stack, "", @progbits
