/*
 * LD_PRELOAD shim for running floriday-proxy under Valgrind 3.19 (Debian 12); profile.sh
 * builds and uses it.
 *
 * After dispatchMain() the main thread parks in libdispatch's _dispatch_sig_thread, which calls
 * sigsuspend() with a signal mask in read-only memory. Valgrind 3.19 edits that mask in place
 * (to keep its own signals deliverable) and dies of SIGSEGV ("the 'impossible' happened").
 * Handing the kernel a writable copy changes nothing else.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, _NSIG / 8);
}
