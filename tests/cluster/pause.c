/* The pod sandbox's only process (the "pause" container): it holds the pod's
 * namespaces open, reaps whatever gets re-parented to it, and exits on
 * SIGINT/SIGTERM. Built static into a FROM-scratch image by images.py, since
 * registry.k8s.io's pause image cannot be pulled here. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, 0, WNOHANG) > 0) {
    }
}

int main(void) {
    signal(SIGINT, quit);
    signal(SIGTERM, quit);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
