/*
 * Ctrl-C during emulation: a native thread that stops Unicorn.
 *
 * The machine runs uc_emu_start holding the GIL (every fault and system
 * call then enters Python without taking it: mmuemu/emu/native.py,
 * emu_start_holding_gil). A guest that never calls back into Python keeps
 * the main thread inside uc_emu_start, and no other Python thread can run
 * meanwhile, so the watcher that turns SIGINT into uc_emu_stop cannot be a
 * Python thread. It is this one: it blocks on the read end of the pipe that
 * Python's signal wakeup fd writes each signal number to (the C-level
 * handler Python installs does that at once, GIL or not), and on SIGINT
 * sets `fired` and calls uc_emu_stop, which only raises Unicorn's stop
 * request and the CPU's exit flag, as Unicorn's own timeout thread does.
 * A 0xff byte ends it. mmuemu/emu/interrupt.py drives it through ctypes.
 *
 * Part of the mmuemu.emu._fastpath shared object.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#define MMUEMU_EXPORT __attribute__((visibility("default")))

/* Mirrored by SigintWatch in mmuemu/emu/interrupt.py. */
struct mmuemu_sigint_watch {
    int32_t fd;                 /* read end of the wakeup pipe */
    int32_t fired;              /* 1 once a SIGINT was read (written by the thread) */
    void *uc;                   /* the uc_engine to stop */
    int (*emu_stop)(void *uc);  /* libunicorn's uc_emu_stop */
    pthread_t thread;
};

#define MMUEMU_WATCH_END 0xffu  /* the byte that ends the thread */

static void *watch_main(void *arg)
{
    struct mmuemu_sigint_watch *w = arg;
    unsigned char buf[64];

    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        int end = 0, interrupted = 0;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == MMUEMU_WATCH_END)
                end = 1;
            else if (buf[i] == SIGINT)
                interrupted = 1;
        }
        if (interrupted) {
            __atomic_store_n(&w->fired, 1, __ATOMIC_SEQ_CST);
            w->emu_stop(w->uc);
        }
        if (end)
            return NULL;
    }
}

/* Start the thread; 0 or an errno value. The thread blocks every signal, so
 * that the process's signals go to the main thread, where Python handles them. */
MMUEMU_EXPORT int mmuemu_sigint_watch_start(struct mmuemu_sigint_watch *w)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&w->thread, NULL, watch_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

/* Wait for the thread to end (after MMUEMU_WATCH_END was written); 0 or an errno value. */
MMUEMU_EXPORT int mmuemu_sigint_watch_join(struct mmuemu_sigint_watch *w)
{
    return pthread_join(w->thread, NULL);
}

/* sizeof(struct mmuemu_sigint_watch), for the ctypes mirror's check. */
MMUEMU_EXPORT uint32_t mmuemu_sigint_watch_size(void)
{
    return (uint32_t)sizeof(struct mmuemu_sigint_watch);
}
