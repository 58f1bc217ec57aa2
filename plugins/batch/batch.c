/* The "batch" plugin: runs a user command (argv) with extra environment in a working directory,
 * and reports its exit code or re-raises the signal that killed it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
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

/* The environment the command gets: this process's, with each env parameter replacing the
 * entry of the same name or added (as putenv would), built before the vfork. The strings are
 * borrowed; the array is the caller's to free. */
static char **command_env(jz_ctx_t *ctx, const struct jz_host *host, size_t nenv)
{
    size_t have = 0;
    while (environ[have])
        have++;
    char **envp = calloc(have + nenv + 1, sizeof *envp);
    if (!envp)
        return NULL;
    memcpy(envp, environ, have * sizeof *envp);
    size_t n = have;
    for (size_t i = 0; i < nenv; i++) {
        char *e = (char *)host->param_list_string(ctx, "env", i);
        size_t name_len = (size_t)(strchr(e, '=') - e) + 1; /* with the '=' */
        size_t j = 0;
        while (j < n && strncmp(envp[j], e, name_len) != 0)
            j++;
        envp[j] = e;
        if (j == n)
            n++;
    }
    return envp;
}

/* execve, and for a file that is not a binary or has no "#!" line (ENOEXEC), the shell on it,
 * as execvp does. */
static void exec_file(const char *file, char **argv, char **envp)
{
    execve(file, argv, envp);
    if (errno != ENOEXEC)
        return;
    size_t argc = 0;
    while (argv[argc])
        argc++;
    char *sh_argv[argc + 2];
    sh_argv[0] = "/bin/sh";
    sh_argv[1] = (char *)file;
    for (size_t i = 1; i <= argc; i++)
        sh_argv[i + 1] = argv[i];
    execve("/bin/sh", sh_argv, envp);
}

/* execvp's search, with the PATH of the command's environment (glibc's execvpe searches this
 * process's PATH instead) and after the chdir, so that a relative or empty entry means the
 * command's directory, as it did. Returns with errno set when nothing could be run, as
 * execvp: EACCES when a candidate was found but refused, else the last error. */
static void exec_search(char **argv, char **envp, const char *path)
{
    const char *file = argv[0];
    if (!*file) {
        errno = ENOENT;
        return;
    }
    if (strchr(file, '/')) {
        exec_file(file, argv, envp);
        return;
    }
    size_t flen = strlen(file);
    if (flen > NAME_MAX) {
        errno = ENAMETOOLONG;
        return;
    }
    char buf[PATH_MAX];
    bool refused = false;
    errno = ENOENT;
    for (const char *p = path;;) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);
        if (dlen + 1 + flen < sizeof buf) { /* a longer candidate cannot exist */
            memcpy(buf, p, dlen);
            if (dlen)
                buf[dlen++] = '/';
            memcpy(buf + dlen, file, flen + 1);
            exec_file(buf, argv, envp);
            if (errno == EACCES)
                refused = true;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ENODEV &&
                     errno != ETIMEDOUT)
                return;
        }
        if (!*end)
            break;
        p = end + 1;
    }
    if (refused)
        errno = EACCES;
}

/* The command's process until it execs. A function of its own so that, after the vfork, its
 * locals live in a frame below the parent's, whose memory it shares until exec: besides its
 * own frames below the parent's stack pointer, its only writes there are errno and the dynamic
 * linker's lazily bound entries for the functions it calls first. Handlers this process
 * installed go back to the default first (a signal must not run the parent's handler on the
 * parent's memory); ignored signals stay ignored, as across a fork and exec. */
static __attribute__((noreturn, noinline)) void become_command(char **argv, char **envp,
                                                               const char *path, const char *cwd,
                                                               int fail_fd, pid_t parent,
                                                               const sigset_t *mask)
{
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &sa) == 0 &&
            sa.sa_handler != SIG_IGN && sa.sa_handler != SIG_DFL)
            signal(sig, SIG_DFL);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    sigprocmask(SIG_SETMASK, mask, NULL);
    struct exec_failure f = {0, 0};
    if (chdir(cwd) != 0) {
        f.err = errno;
    } else {
        exec_search(argv, envp, path);
        f = (struct exec_failure){1, errno};
    }
    if (write(fail_fd, &f, sizeof f) < 0) {
        /* The parent then sees exit code 127 without a reason. */
    }
    _exit(127);
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
    char **envp = command_env(ctx, host, nenv);
    if (!envp) {
        host->set_error(ctx, "batch: out of memory");
        free(argv);
        return 1;
    }

    /* The command is searched for on its own PATH; without one, on execvp's default. */
    const char *path = "/bin:/usr/bin";
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        host->set_error(ctx, "batch: pipe: %s", strerror(errno));
        free(argv);
        free(envp);
        return 1;
    }
    host->log(ctx, JZ_LOG_INFO, "batch: running '%s' (%zu arguments) in %s", argv[0], argc - 1,
              cwd);
    /* A vfork: a fork copied this process's page tables only for the command's exec to drop
     * them (the workers' copy_process was 4% of the machine's time in a serial loop of
     * `jazari submit -- true`, and the exec's teardown of the copy more). Every signal stays
     * blocked until the child has reset the handlers. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = vfork();
    if (pid == 0)
        become_command(argv, envp, path, cwd, pipefd[1], parent, &old);
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    free(envp);
    if (pid < 0) {
        host->set_error(ctx, "batch: fork: %s", strerror(fork_errno));
        close(pipefd[0]);
        close(pipefd[1]);
        free(argv);
        return 1;
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
