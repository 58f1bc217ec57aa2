/* A child's standard output through a pipe, read with poll() against one deadline. */
#define _GNU_SOURCE /* pipe2 */
#include "common/run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/time.h"

extern char **environ;

char *jz_run_capture(char *const argv[], size_t max, int64_t timeout_ms, int *status,
                     struct jz_error *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        jz_error_set(err, JZ_EIO, "pipe: %s", strerror(errno));
        return NULL;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        jz_error_set(err, JZ_EIO, "cannot run %s: %s", argv[0], strerror(rc));
        return NULL;
    }
    char *out = malloc(max + 1);
    size_t len = 0;
    int64_t deadline = jz_time_mono_ms() + timeout_ms;
    bool timed_out = false;
    while (out && len < max) {
        int64_t left = deadline - jz_time_mono_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        ssize_t n = read(fds[0], out + len, max - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fds[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
    }
    if (!out) {
        jz_error_set(err, JZ_ENOMEM, "out of memory");
        return NULL;
    }
    if (timed_out) {
        free(out);
        jz_error_set(err, JZ_ETIMEDOUT, "%s took longer than %lld ms", argv[0],
                     (long long)timeout_ms);
        return NULL;
    }
    out[len] = '\0';
    return out;
}
