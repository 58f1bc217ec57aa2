/* The "batch" plugin: runs a user command (argv) with extra environment in a working directory,
 * and reports its exit code or re-raises the signal that killed it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jazari/plugin.h>

static const struct jz_param_spec batch_params[] = {
    {.name = "argv",
     .type = JZ_PARAM_STRING_LIST,
     .required = true,
     .min = 1,
     .max = 4096,
     .help = "the command and its arguments, run with execvp (no shell)"},
    {.name = "env",
     .type = JZ_PARAM_STRING_LIST,
     .max = 4096,
     .help = "extra environment variables, each NAME=VALUE"},
    {.name = "cwd",
     .type = JZ_PARAM_STRING,
     .max = 4096,
     .help = "working directory (default: the submit directory when it exists, else the output "
             "directory)"},
};

/* What the command's process reports through the exec pipe when it cannot start. */
struct exec_failure {
    int stage; /* 0: chdir, 1: execvp */
    int err;
};

static bool is_dir(const char *path)
{
    struct stat st;
    return path && path[0] && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool env_entry_ok(const char *s)
{
    const char *eq = strchr(s, '=');
    if (!eq || eq == s)
        return false;
    for (const char *p = s; p < eq; p++)
        if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (p > s && *p >= '0' && *p <= '9')))
            return false;
    return true;
}

static int batch_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    size_t argc = host->param_list_len(ctx, "argv");
    size_t nenv = host->param_list_len(ctx, "env");
    char **argv = calloc(argc + 1, sizeof *argv);
    if (!argv) {
        host->set_error(ctx, "batch: out of memory");
        return 1;
    }
    for (size_t i = 0; i < argc; i++)
        argv[i] = (char *)host->param_list_string(ctx, "argv", i);
    for (size_t i = 0; i < nenv; i++) {
        const char *e = host->param_list_string(ctx, "env", i);
        if (!env_entry_ok(e)) {
            host->set_error(ctx, "batch: env entry %zu is not NAME=VALUE", i);
            free(argv);
            return 2;
        }
    }
    const char *cwd = host->param_string(ctx, "cwd");
    if (!cwd)
        cwd = is_dir(host->submit_dir(ctx)) ? host->submit_dir(ctx) : host->output_dir(ctx);

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        host->set_error(ctx, "batch: pipe: %s", strerror(errno));
        free(argv);
        return 1;
    }
    host->log(ctx, JZ_LOG_INFO, "batch: running '%s' (%zu arguments) in %s", argv[0], argc - 1,
              cwd);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        host->set_error(ctx, "batch: fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        free(argv);
        return 1;
    }
    if (pid == 0) {
        struct exec_failure f = {0, 0};
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        close(pipefd[0]);
        for (size_t i = 0; i < nenv; i++)
            putenv((char *)host->param_list_string(ctx, "env", i));
        if (chdir(cwd) != 0) {
            f.err = errno;
        } else {
            execvp(argv[0], argv);
            f = (struct exec_failure){1, errno};
        }
        if (write(pipefd[1], &f, sizeof f) < 0) {
            /* The parent then sees exit code 127 without a reason. */
        }
        _exit(127);
    }
    close(pipefd[1]);
    struct exec_failure f;
    ssize_t got;
    do
        got = read(pipefd[0], &f, sizeof f);
    while (got < 0 && errno == EINTR);
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got == (ssize_t)sizeof f) {
        if (f.stage == 0)
            host->set_error(ctx, "batch: cannot change to directory '%s': %s", cwd,
                            strerror(f.err));
        else
            host->set_error(ctx, "batch: cannot run '%s': %s", argv[0], strerror(f.err));
        free(argv);
        return 127;
    }
    const char *prog = argv[0]; /* borrowed from the parameters, outlives argv */
    free(argv);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        host->log(ctx, JZ_LOG_INFO, "batch: command killed by signal %d (%s)", sig, strsignal(sig));
        /* Dying by the same signal makes the job record show the signal, not an exit code. */
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
        return 128 + sig;
    }
    int code = WEXITSTATUS(status);
    host->log(ctx, JZ_LOG_INFO, "batch: command exited with code %d", code);
    if (code != 0)
        host->set_error(ctx, "batch: '%s' exited with code %d", prog, code);
    return code;
}

static const struct jz_plugin_ops batch_ops = {
    .struct_size = sizeof(struct jz_plugin_ops),
    .run = batch_run,
};

JZ_PLUGIN_DEFINE(.name = "batch", .version = "1.0.0",
                 .description = "Runs a command line in the job's CPUs, GPUs and directories",
                 .caps = JZ_CAP_RUNS_COMMAND | JZ_CAP_USES_GPU, .params = batch_params,
                 .n_params = JZ_ARRAY_LEN(batch_params), .ops = &batch_ops);
