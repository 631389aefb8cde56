/* arm64 process entry. At entry (Linux ABI): sp is 16-byte aligned and
 *   [sp] = argc, [sp+8] = argv[0..argc-1], NULL, envp[...], NULL, auxv... */
    .file   "start_aarch64.S"           /* STT_FILE: else ld names the temp .o */
    .text
    .globl  _start
    .type   _start, %function
_start:
    mov     x29, #0                     /* outermost frame */
    mov     x30, #0
    ldr     x0, [sp]                    /* argc */
    add     x1, sp, #8                  /* argv */
    add     x2, x1, x0, lsl #3
    add     x2, x2, #8                  /* envp = argv + argc + 1 */
    adrp    x3, environ
    str     x2, [x3, :lo12:environ]
    bl      main
    mov     x8, #94                     /* exit_group(main's return) */
    svc     #0
    brk     #0
    .size   _start, . - _start

    .section .note.GNU-stack, "", %progbits
