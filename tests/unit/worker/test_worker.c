/* Tests of jazari-worker: --describe on each test plugin, and --spec runs of batch, crash,
 * hang (time limit), sleeper (cancel, failure, bad params) and example (checkpoints). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/strutil.h"
#include "common/time.h"

#define TEST_PLUGIN(name) JZ_TEST_PLUGIN_DIR "/" name ".so"

/* One worker run: its events in order, its exit status, the job's folder. */
struct run {
    char dir[64];
    json_t *events; /* array */
    int wstatus;
    int64_t elapsed_ms;
};

enum action { ACT_NONE, ACT_TERM_ON_PROGRESS, ACT_USR1_THEN_TERM };

static void rm_rf(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static char *job_file(const struct run *r, const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", r->dir, rel);
    return read_file(path);
}

/* Runs the worker on spec (stolen), filling the paths the test does not set itself. */
static void run_worker(json_t *spec, enum action act, struct run *r)
{
    strcpy(r->dir, "/tmp/jz-test-worker-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    char path[256];
    if (!json_object_get(spec, "job_id"))
        json_object_set_new(spec, "job_id", json_string("42"));
    snprintf(path, sizeof path, "%s/out", r->dir);
    json_object_set_new(spec, "output_dir", json_string(path));
    snprintf(path, sizeof path, "%s/log", r->dir);
    json_object_set_new(spec, "log_path", json_string(path));
    if (!json_object_get(spec, "checkpoint_dir")) {
        snprintf(path, sizeof path, "%s/ckpt", r->dir);
        json_object_set_new(spec, "checkpoint_dir", json_string(path));
    }
    if (!json_object_get(spec, "kill_grace_s"))
        json_object_set_new(spec, "kill_grace_s", json_integer(1));
    snprintf(path, sizeof path, "%s/spec.json", r->dir);
    assert_int_equal(json_dump_file(spec, path, 0), 0);
    json_decref(spec);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int64_t start = jz_time_mono_ms();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", fds[1]);
        execl(JZ_WORKER_BIN, JZ_WORKER_BIN, "--spec", path, "--events-fd", fdarg, (char *)NULL);
        _exit(126);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    r->events = json_array();
    char *line = NULL;
    size_t cap = 0;
    bool sent_usr1 = false, sent_term = false;
    while (getline(&line, &cap, in) > 0) {
        json_error_t jerr;
        json_t *ev = json_loads(line, 0, &jerr);
        if (!ev)
            fail_msg("event line is not JSON: %s", line);
        const char *type = json_string_value(json_object_get(ev, "type"));
        assert_non_null(type);
        if (act == ACT_TERM_ON_PROGRESS && !sent_term && strcmp(type, "progress") == 0) {
            kill(pid, SIGTERM);
            sent_term = true;
        }
        if (act == ACT_USR1_THEN_TERM && !sent_usr1 && strcmp(type, "progress") == 0) {
            kill(pid, SIGUSR1);
            sent_usr1 = true;
        }
        if (act == ACT_USR1_THEN_TERM && !sent_term && strcmp(type, "checkpoint") == 0) {
            kill(pid, SIGTERM);
            sent_term = true;
        }
        json_array_append_new(r->events, ev);
    }
    free(line);
    fclose(in);
    assert_int_equal(waitpid(pid, &r->wstatus, 0), pid);
    r->elapsed_ms = jz_time_mono_ms() - start;
}

static void run_free(struct run *r)
{
    json_decref(r->events);
    rm_rf(r->dir);
}

static json_t *last_event(const struct run *r)
{
    size_t n = json_array_size(r->events);
    assert_true(n >= 1);
    json_t *ev = json_array_get(r->events, n - 1);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "exit");
    return ev;
}

static json_t *find_event(const struct run *r, const char *type)
{
    size_t i;
    json_t *ev;
    json_array_foreach(r->events, i, ev)
    {
        if (strcmp(json_string_value(json_object_get(ev, "type")), type) == 0)
            return ev;
    }
    return NULL;
}

/* Checks the exit event: status, exit code (-1: null) and signal (0: null). */
static void check_exit(const struct run *r, const char *status, int code, int sig)
{
    json_t *ev = last_event(r);
    assert_string_equal(json_string_value(json_object_get(ev, "status")), status);
    json_t *c = json_object_get(ev, "exit_code"), *s = json_object_get(ev, "signal");
    if (code < 0)
        assert_true(json_is_null(c));
    else
        assert_int_equal(json_integer_value(c), code);
    if (sig == 0)
        assert_true(json_is_null(s));
    else
        assert_int_equal(json_integer_value(s), sig);
    /* The first event is "started" with the job process id. */
    json_t *first = json_array_get(r->events, 0);
    assert_string_equal(json_string_value(json_object_get(first, "type")), "started");
    assert_true(json_integer_value(json_object_get(first, "pid")) > 0);
    assert_true(WIFEXITED(r->wstatus));
    assert_int_equal(WEXITSTATUS(r->wstatus), strcmp(status, "succeeded") == 0 ? 0 : 1);
}

static const char *exit_message(const struct run *r)
{
    return json_string_value(json_object_get(last_event(r), "message"));
}

/* Runs --describe; returns its stdout parsed and the exit code. */
static json_t *describe(const char *so, int *code)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' --describe '%s'", JZ_WORKER_BIN, so);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    int st = pclose(p);
    assert_true(WIFEXITED(st));
    *code = WEXITSTATUS(st);
    assert_non_null(strchr(buf, '\n'));
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* exactly one line */
    json_t *v = json_loads(buf, 0, NULL);
    assert_non_null(v);
    return v;
}

static void test_describe_ok(void **state)
{
    int code;
    json_t *d = describe(JZ_BATCH_SO, &code);
    assert_int_equal(code, 0);
    assert_string_equal(json_string_value(json_object_get(d, "name")), "batch");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "abi"), "major")), 1);
    json_t *caps = json_object_get(d, "caps");
    assert_int_equal(json_array_size(caps), 2);
    assert_string_equal(json_string_value(json_array_get(caps, 0)), "uses_gpu");
    assert_string_equal(json_string_value(json_array_get(caps, 1)), "runs_command");
    json_t *argv = json_array_get(json_object_get(d, "params"), 0);
    assert_string_equal(json_string_value(json_object_get(argv, "name")), "argv");
    assert_string_equal(json_string_value(json_object_get(argv, "type")), "string_list");
    assert_true(json_is_true(json_object_get(argv, "required")));
    json_decref(d);

    d = describe(TEST_PLUGIN("sleeper"), &code);
    assert_int_equal(code, 0);
    json_t *secs = json_array_get(json_object_get(d, "params"), 0);
    assert_string_equal(json_string_value(json_object_get(secs, "type")), "float");
    assert_true(json_is_real(json_object_get(secs, "default"))); /* "1" shown as 1.0 */
    assert_true(json_real_value(json_object_get(secs, "default")) == 1.0);
    json_decref(d);

    d = describe(JZ_EXAMPLE_SO, &code);
    assert_int_equal(code, 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "caps"), 0)),
                        "checkpoint");
    json_decref(d);
}

static void check_refused(const char *so, const char *needle)
{
    int code;
    json_t *d = describe(so, &code);
    assert_int_equal(code, 2);
    /* The error, and the SHA-256 of the bytes refused when the file could be read. */
    const char *sha = json_string_value(json_object_get(d, "sha256"));
    assert_int_equal(json_object_size(d), sha ? 2 : 1);
    if (sha)
        assert_int_equal(strlen(sha), 64);
    const char *msg = json_string_value(json_object_get(d, "error"));
    assert_non_null(msg);
    if (!strstr(msg, needle))
        fail_msg("refusal '%s' does not mention '%s'", msg, needle);
    json_decref(d);
}

static void test_describe_refused(void **state)
{
    check_refused(TEST_PLUGIN("badabi"), "ABI 99.0 is not supported");
    check_refused(TEST_PLUGIN("nodesc"), "exports no 'jazari_plugin' symbol");
    check_refused(JZ_TEST_PLUGIN_DIR "/missing.so", "cannot open");
    /* Not a shared object at all. */
    check_refused(JZ_WORKER_BIN, "cannot load plugin");
}

static void test_batch_exit_code_env_log(void **state)
{
    struct run r;
    /* JZ_TEST_PRESET is in the worker's environment already: the parameter replaces it (one
     * entry), and of two entries of one name the last wins, as with putenv. */
    setenv("JZ_TEST_PRESET", "old", 1);
    json_t *spec = json_pack(
        "{s:s, s:{s:[s,s,s], s:[s,s,s,s]}, s:[{s:s, s:i, s:i, s:s}, {s:s, s:i, s:i, s:s}], s:b}",
        "plugin_path", JZ_BATCH_SO, "params", "argv", "sh", "-c",
        "echo out-line; echo err-line >&2; "
        "echo \"$FOO $JAZARI_JOB_ID $CUDA_VISIBLE_DEVICES $JAZARI_GPUS $JAZARI_NUM_GPUS "
        "$JAZARI_BACKEND $JAZARI_GPU_PCI_IDS\" > env.txt; "
        "echo \"$(env | grep -c ^JZ_TEST_PRESET=) $JZ_TEST_PRESET $BAZ\" > preset.txt; exit 7",
        "env", "FOO=bar", "JZ_TEST_PRESET=first", "BAZ=1", "JZ_TEST_PRESET=new", "devices",
        "backend", "opencl", "ordinal", 0, "node_index", 3, "pci_bus_id", "0000:3b:00.0",
        "backend", "opencl", "ordinal", 1, "node_index", 5, "pci_bus_id", "0000:af:00.0", "bind",
        0);
    run_worker(spec, ACT_NONE, &r);
    unsetenv("JZ_TEST_PRESET");
    check_exit(&r, "failed", 7, 0);
    char *preset = job_file(&r, "out/preset.txt");
    assert_non_null(preset);
    assert_string_equal(preset, "1 new 1\n");
    free(preset);

    assert_non_null(strstr(exit_message(&r), "exited with code 7"));
    /* Without cwd and with no submit_dir, the command runs in the output directory. */
    char *env = job_file(&r, "out/env.txt");
    assert_non_null(env);
    assert_string_equal(env, "bar 42 3,5 3,5 2 opencl 0000:3b:00.0,0000:af:00.0\n");
    free(env);
    char *log = job_file(&r, "log");
    assert_non_null(log);
    assert_non_null(strstr(log, "out-line\n"));
    assert_non_null(strstr(log, "err-line\n"));
    assert_non_null(strstr(log, "[INFO] batch: running 'sh'"));
    assert_non_null(strstr(log, "[ERROR] batch: 'sh' exited with code 7"));
    free(log);
    run_free(&r);
}

static void test_batch_success_bound(void **state)
{
    /* Bind to the first CPU this test may use, and check the command saw only that one. */
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &set))
        cpu++;
    char cpus[16];
    snprintf(cpus, sizeof cpus, "%d", cpu);
    struct run r;
    /* The submit directory exists, so the command runs there. */
    json_t *spec = json_pack("{s:s, s:{s:[s,s,s]}, s:s, s:b, s:s}", "plugin_path", JZ_BATCH_SO,
                             "params", "argv", "sh", "-c",
                             "f=$JAZARI_OUTPUT_DIR/cpus.txt; "
                             "grep Cpus_allowed_list /proc/self/status | cut -f2 > $f; "
                             "echo $JAZARI_CPUS $JAZARI_NUM_GPUS \"[$CUDA_VISIBLE_DEVICES]\" "
                             "$JAZARI_BACKEND $(pwd) $OMP_NUM_THREADS $OPENBLAS_NUM_THREADS "
                             "$OMP_WAIT_POLICY >> $f",
                             "cpus", cpus, "bind", 1, "submit_dir", "/");
    run_worker(spec, ACT_NONE, &r);
    check_exit(&r, "succeeded", 0, 0);
    char *got = job_file(&r, "out/cpus.txt");
    assert_non_null(got);
    char want[64];
    /* Thread pools are sized to the job's one CPU, and idle OpenMP threads sleep. */
    snprintf(want, sizeof want, "%d\n%d 0 [] cpu / 1 1 PASSIVE\n", cpu, cpu);
    assert_string_equal(got, want);
    free(got);
    run_free(&r);
}

static void test_batch_bind_refused(void **state)
{
    /* Processors the kernel will not give (the last number the lists accept; alone, and with
     * one this test may use) fail the job before it starts, naming what was available. */
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    int first = 0;
    while (!CPU_ISSET(first, &set))
        first++;
    char cpus[32], want[96];
    snprintf(cpus, sizeof cpus, "%d,8191", first);
    struct run r;
    json_t *spec = json_pack("{s:s, s:{s:[s]}, s:s, s:b}", "plugin_path", JZ_BATCH_SO, "params",
                             "argv", "true", "cpus", "8191", "bind", 1);
    run_worker(spec, ACT_NONE, &r);
    assert_string_equal(json_string_value(json_object_get(last_event(&r), "status")), "failed");
    assert_non_null(strstr(exit_message(&r), "cpus '8191' are not available here"));
    run_free(&r);
    spec = json_pack("{s:s, s:{s:[s]}, s:s, s:b}", "plugin_path", JZ_BATCH_SO, "params", "argv",
                     "true", "cpus", cpus, "bind", 1);
    run_worker(spec, ACT_NONE, &r);
    assert_string_equal(json_string_value(json_object_get(last_event(&r), "status")), "failed");
    snprintf(want, sizeof want, "cpus '%s' are not all available here (only %d of them are)",
             cpus, first);
    assert_non_null(strstr(exit_message(&r), want));
    run_free(&r);
}

static void test_batch_bind_memory(void **state)
{
    /* Memory bound to NUMA node 0, which every Linux machine has: the command runs with that
     * policy (or, where the kernel refuses memory policies, with a warning and none). */
    struct run r;
    json_t *spec = json_pack("{s:s, s:{s:[s,s,s]}, s:s, s:s, s:b}", "plugin_path", JZ_BATCH_SO,
                             "params", "argv", "sh", "-c",
                             "echo > $JAZARI_OUTPUT_DIR/mems.txt; cat /proc/self/numa_maps | "
                             "grep -c 'bind:0' >> $JAZARI_OUTPUT_DIR/mems.txt || true",
                             "cpus", "", "numa_nodes", "0", "bind", 1);
    run_worker(spec, ACT_NONE, &r);
    check_exit(&r, "succeeded", 0, 0);
    char *got = job_file(&r, "out/mems.txt");
    char *log = job_file(&r, "log");
    assert_non_null(got);
    assert_non_null(log);
    if (!strstr(log, "cannot bind memory"))
        assert_null(strstr(got, "\n0\n")); /* some mapping of the shell carries bind:0 */
    free(got);
    free(log);
    run_free(&r);
}

static void test_batch_signal(void **state)
{
    struct run r;
    json_t *spec = json_pack("{s:s, s:{s:[s,s,s]}}", "plugin_path", JZ_BATCH_SO, "params", "argv",
                             "sh", "-c", "kill -USR2 $$");
    run_worker(spec, ACT_NONE, &r);
    check_exit(&r, "failed", -1, SIGUSR2);
    assert_non_null(strstr(exit_message(&r), "signal 12"));
    run_free(&r);
}

/* The command starts with no signal blocked, though the plugin blocks them all around its vfork
 * (grep itself reads its mask: a shell would clear it at start-up). */
static void test_batch_signal_mask(void **state)
{
    struct run r;
    json_t *spec = json_pack("{s:s, s:{s:[s,s,s]}}", "plugin_path", JZ_BATCH_SO, "params", "argv",
                             "grep", "^SigBlk:", "/proc/self/status");
    run_worker(spec, ACT_NONE, &r);
    check_exit(&r, "succeeded", 0, 0);
    char *log = job_file(&r, "log");
    assert_non_null(log);
    assert_non_null(strstr(log, "SigBlk:\t0000000000000000\n"));
    free(log);
    run_free(&r);
}

static void write_script(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* A command without a slash is searched for on the PATH of the job's environment (not the
 * worker's), after the change to its directory (a relative entry is taken from there); a file
 * without "#!" runs under /bin/sh; one that cannot be executed is refused with its reason. */
static void test_batch_path_search(void **state)
{
    char dir[] = "/tmp/jz-batch-path-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_script(dir, "jz-path-tool", "#!/bin/sh\necho via-job-path\n", 0755);
    write_script(dir, "jz-no-shebang", "echo no-shebang-ran\n", 0755);
    write_script(dir, "jz-not-exec", "#!/bin/sh\necho never\n", 0644);
    struct {
        const char *cmd, *status, *out;
        int code;
    } cases[] = {
        {"jz-path-tool", "succeeded", "via-job-path\n", 0},
        {"jz-no-shebang", "succeeded", "no-shebang-ran\n", 0},
        {"jz-not-exec", "failed", "batch: cannot run 'jz-not-exec': Permission denied", 127},
        {"jz-missing", "failed", "batch: cannot run 'jz-missing': No such file or directory", 127},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r;
        json_t *spec = json_pack("{s:s, s:{s:[s], s:[s], s:s}}", "plugin_path", JZ_BATCH_SO,
                                 "params", "argv", cases[i].cmd, "env",
                                 "PATH=/nonexistent:.:/usr/bin:/bin", "cwd", dir);
        run_worker(spec, ACT_NONE, &r);
        check_exit(&r, cases[i].status, cases[i].code, 0);
        char *log = job_file(&r, "log");
        assert_non_null(log);
        assert_non_null(strstr(log, cases[i].out));
        free(log);
        run_free(&r);
    }
    assert_int_equal(jz_remove_tree(dir), 0);
}

static void test_batch_exec_failure(void **state)
{
    struct run r;
    json_t *spec = json_pack("{s:s, s:{s:[s]}}", "plugin_path", JZ_BATCH_SO, "params", "argv",
                             "/nonexistent/prog");
    run_worker(spec, ACT_NONE, &r);
    check_exit(&r, "failed", 127, 0);
    assert_string_equal(exit_message(&r),
                        "batch: cannot run '/nonexistent/prog': No such file or directory");
    json_t *err = find_event(&r, "error");
    assert_non_null(err);
    char *log = job_file(&r, "log");
    assert_non_null(strstr(log, "batch: cannot run '/nonexistent/prog'"));
    free(log);
    run_free(&r);
}

static void test_crash(void **state)
{
    struct run r;
    run_worker(json_pack("{s:s}", "plugin_path", TEST_PLUGIN("crash")), ACT_NONE, &r);
    check_exit(&r, "failed", -1, SIGSEGV);
    assert_non_null(strstr(exit_message(&r), "signal 11"));
    run_free(&r);
}

static void test_hang_time_limit(void **state)
{
    struct run r;
    run_worker(json_pack("{s:s, s:i, s:i}", "plugin_path", TEST_PLUGIN("hang"), "time_limit_s", 1,
                         "kill_grace_s", 1),
               ACT_NONE, &r);
    check_exit(&r, "timeout", -1, SIGKILL);
    /* TERM at 1 s is ignored by the plugin, so KILL comes 1 s later. */
    assert_true(r.elapsed_ms >= 1900);
    assert_true(r.elapsed_ms < 6000);
    char *log = job_file(&r, "log");
    assert_non_null(strstr(log, "sending SIGKILL"));
    free(log);
    run_free(&r);
}

static void test_sleeper_cancelled(void **state)
{
    struct run r;
    run_worker(
        json_pack("{s:s, s:{s:i}}", "plugin_path", TEST_PLUGIN("sleeper"), "params", "seconds", 30),
        ACT_TERM_ON_PROGRESS, &r);
    /* The plugin saw host->cancelled and returned 1 by itself, well before the grace ran out. */
    check_exit(&r, "cancelled", 1, 0);
    assert_true(r.elapsed_ms < 5000);
    assert_non_null(find_event(&r, "metric"));
    char *log = job_file(&r, "log");
    assert_non_null(strstr(log, "sleeper: cancelled after"));
    free(log);
    run_free(&r);
}

static void test_sleeper_fail_and_bad_params(void **state)
{
    struct run r;
    run_worker(json_pack("{s:s, s:{s:i, s:s}}", "plugin_path", TEST_PLUGIN("sleeper"), "params",
                         "seconds", 0, "fail", "true"),
               ACT_NONE, &r);
    check_exit(&r, "failed", 3, 0);
    assert_string_equal(exit_message(&r), "sleeper: failing as asked");
    run_free(&r);

    run_worker(json_pack("{s:s, s:{s:s}}", "plugin_path", TEST_PLUGIN("sleeper"), "params",
                         "seconds", "soon"),
               ACT_NONE, &r);
    check_exit(&r, "failed", 2, 0);
    assert_non_null(strstr(exit_message(&r), "invalid parameters: params.seconds: "));
    run_free(&r);

    run_worker(json_pack("{s:s}", "plugin_path", TEST_PLUGIN("badabi")), ACT_NONE, &r);
    check_exit(&r, "failed", 2, 0);
    assert_non_null(strstr(exit_message(&r), "plugin refused: "));
    run_free(&r);
}

static void test_example_resume_and_checkpoint(void **state)
{
    struct run r;
    run_worker(json_pack("{s:s, s:{s:i, s:i}}", "plugin_path", JZ_EXAMPLE_SO, "params", "count", 5,
                         "delay_ms", 0),
               ACT_NONE, &r);
    check_exit(&r, "succeeded", 0, 0);
    char *sum = job_file(&r, "out/sum");
    assert_string_equal(sum, "15\n");
    free(sum);
    json_t *art = find_event(&r, "artifact");
    assert_non_null(art);
    assert_string_equal(json_string_value(json_object_get(art, "name")), "sum");
    assert_null(find_event(&r, "checkpoint"));
    run_free(&r);

    /* Resume: a checkpoint saying "next 3, sum 100" gives 100 + 3 + 4 + 5. */
    char ckdir[] = "/tmp/jz-test-resume-XXXXXX";
    assert_non_null(mkdtemp(ckdir));
    char path[256];
    snprintf(path, sizeof path, "%s/checkpoint.bin", ckdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "3 100\n");
    fclose(f);
    run_worker(json_pack("{s:s, s:{s:i, s:i}, s:s}", "plugin_path", JZ_EXAMPLE_SO, "params",
                         "count", 5, "delay_ms", 0, "checkpoint_dir", ckdir),
               ACT_NONE, &r);
    check_exit(&r, "succeeded", 0, 0);
    sum = job_file(&r, "out/sum");
    assert_string_equal(sum, "112\n");
    free(sum);
    run_free(&r);
    rm_rf(ckdir);

    /* SIGUSR1 to the worker asks the plugin for a checkpoint; then cancel. */
    run_worker(json_pack("{s:s, s:{s:i, s:i}}", "plugin_path", JZ_EXAMPLE_SO, "params", "count",
                         100000, "delay_ms", 5),
               ACT_USR1_THEN_TERM, &r);
    check_exit(&r, "cancelled", 1, 0);
    json_t *ck = find_event(&r, "checkpoint");
    assert_non_null(ck);
    char *data = read_file(json_string_value(json_object_get(ck, "path")));
    assert_non_null(data);
    long long next, total;
    assert_int_equal(sscanf(data, "%lld %lld", &next, &total), 2);
    assert_int_equal(total, (next - 1) * next / 2);
    free(data);
    run_free(&r);
}

/* Asserts that the log holds the line "[INFO] check " + want. */
static void check_line(const char *log, const char *want)
{
    char line[512];
    snprintf(line, sizeof line, "[INFO] check %s\n", want);
    if (!strstr(log, line))
        fail_msg("log lacks '%s'", want);
}

static void test_host_functions(void **state)
{
    struct run r;
    json_t *spec =
        json_pack("{s:s, s:s, s:{s:s, s:s}, s:[{s:s, s:i, s:i, s:s, s:s, s:I, s:i}], s:s, s:b}",
                  "plugin_path", TEST_PLUGIN("hostcheck"), "job_id", "job-7", "params", "ints",
                  "4,5", "strs", "a b", "devices", "backend", "cuda", "ordinal", 0, "node_index", 2,
                  "pci_bus_id", "0000:3b:00.0", "model", "Tesla T4", "memory_bytes",
                  (json_int_t)16106127360LL, "numa_node", 1, "submit_dir", "/home/x", "bind", 0);
    run_worker(spec, ACT_NONE, &r);
    check_exit(&r, "failed", 5, 0);
    assert_string_equal(exit_message(&r), "hostcheck: done (5)");
    char *log = job_file(&r, "log");
    assert_non_null(log);
    check_line(log, "host_size_ok=1 abi=1.1");
    check_line(log, "job_id=job-7");
    check_line(log, "params_json={\"ints\":[4,5],\"ratio\":0.5,\"strs\":[\"a b\"]}");
    check_line(log, "ints=2:4,5");
    check_line(log, "strs=1:a b");
    check_line(log, "ratio=0.5 absent=0,0,0,0,(null)");
    check_line(log, "devices=1");
    check_line(log, "dev0=0:cuda/0/2/0000:3b:00.0/Tesla T4/16106127360/1");
    check_line(log, "small_get=0 backend=cuda untouched=1");
    check_line(log, "get_past_end=-6");
    check_line(log, "output_dir_set=1 submit_dir=/home/x");
    check_line(log, "artifact_bad=-1,-1,-6");
    check_line(log, "artifact_ok=0,0");
    check_line(log, "restore=none");
    check_line(log, "commit_without_file=-3");
    check_line(log, "checkpoint=0,0,requested=0");
    check_line(log, "cancelled=0");
    assert_non_null(strstr(log, "[INFO] line one still line one\n"));
    assert_non_null(strstr(log, "[WARN] worker: metric dropped"));
    assert_non_null(strstr(log, "[WARN] worker: metric inf dropped"));
    /* The 6000-byte line is cut to 4 KiB, newline included. */
    char *dbg = strstr(log, "[DEBUG] x");
    assert_non_null(dbg);
    assert_int_equal(strchr(dbg, '\n') - dbg + 1, 4096 - 1);
    free(log);

    /* Events: one artifact event despite two registrations, the good metric only. */
    size_t i, artifacts = 0, metrics = 0;
    json_t *ev;
    json_array_foreach(r.events, i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (strcmp(type, "artifact") == 0)
            artifacts++;
        if (strcmp(type, "metric") == 0) {
            metrics++;
            assert_string_equal(json_string_value(json_object_get(ev, "name")), "good.metric-1");
            assert_true(json_is_null(json_object_get(ev, "step")));
        }
        if (strcmp(type, "progress") == 0)
            assert_true(json_number_value(json_object_get(ev, "fraction")) == 1.0);
    }
    assert_int_equal(artifacts, 1);
    assert_int_equal(metrics, 1);
    json_t *ck = find_event(&r, "checkpoint");
    assert_non_null(ck);
    char *data = read_file(json_string_value(json_object_get(ck, "path")));
    assert_string_equal(data, "state\n");
    free(data);
    run_free(&r);
}

static void log_has(const char *log, const char *want)
{
    if (!log || !strstr(log, want))
        fail_msg("log lacks '%s':\n%s", want, log ? log : "(no log)");
}

/* The worker loads only the bytes the job was accepted with: a plugin_sha256 that does not
 * match the file fails the job with a reason naming both. */
static void test_sha256_checked(void **state)
{
    int code;
    json_t *d = describe(TEST_PLUGIN("sleeper"), &code);
    assert_int_equal(code, 0);
    char sha[65];
    snprintf(sha, sizeof sha, "%s", json_string_value(json_object_get(d, "sha256")));
    assert_int_equal(strlen(sha), 64);
    json_decref(d);

    struct run r;
    run_worker(json_pack("{s:s, s:s, s:{s:i}}", "plugin_path", TEST_PLUGIN("sleeper"),
                         "plugin_sha256", sha, "params", "seconds", 0),
               ACT_NONE, &r);
    check_exit(&r, "succeeded", 0, 0);
    run_free(&r);

    char other[65];
    memcpy(other, sha, sizeof other);
    other[0] = other[0] == '0' ? '1' : '0';
    run_worker(json_pack("{s:s, s:s, s:{s:i}}", "plugin_path", TEST_PLUGIN("sleeper"),
                         "plugin_sha256", other, "params", "seconds", 0),
               ACT_NONE, &r);
    check_exit(&r, "failed", 2, 0);
    assert_non_null(strstr(exit_message(&r), "plugin refused: "));
    assert_non_null(strstr(exit_message(&r), "the job was submitted with"));
    run_free(&r);

    /* --describe --sha256 refuses other bytes too (jazarid describes its copy so). */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s --describe %s --sha256 %s", JZ_WORKER_BIN,
             TEST_PLUGIN("sleeper"), other);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[4096] = "";
    assert_non_null(fgets(line, sizeof line, f));
    assert_int_equal(WEXITSTATUS(pclose(f)), 2);
    assert_non_null(strstr(line, "the job was submitted with"));
}

/* ABI 1.1 hooks: init gets the site configuration, validate can refuse the parameters (the
 * job fails with its reason), fini runs after run and after a refusal. */
static void test_hooks(void **state)
{
    struct run r;
    run_worker(json_pack("{s:s, s:{s:s}, s:{s:i, s:i}}", "plugin_path",
                         TEST_PLUGIN("lifecycle_v110"), "plugin_config", "greeting", "hello",
                         "params", "lo", 1, "hi", 2),
               ACT_NONE, &r);
    check_exit(&r, "succeeded", 0, 0);
    char *log = job_file(&r, "log");
    log_has(log, "lifecycle: init site={\"greeting\":\"hello\"}");
    log_has(log, "lifecycle: run version=1.1.0 init=1 site={\"greeting\":\"hello\"}");
    log_has(log, "lifecycle: fini");
    free(log);
    char *fini = job_file(&r, "out/fini.txt");
    assert_string_equal(fini, "fini 1.1.0\n");
    free(fini);
    run_free(&r);

    run_worker(json_pack("{s:s, s:{s:i, s:i}}", "plugin_path", TEST_PLUGIN("lifecycle_v100"),
                         "params", "lo", 5, "hi", 2),
               ACT_NONE, &r);
    check_exit(&r, "failed", 2, 0);
    assert_string_equal(exit_message(&r), "invalid parameters: lo (5) must be less than hi (2)");
    fini = job_file(&r, "out/fini.txt");
    assert_string_equal(fini, "fini 1.0.0\n");
    free(fini);
    run_free(&r);

    run_worker(json_pack("{s:s, s:{s:b}, s:{}}", "plugin_path", TEST_PLUGIN("lifecycle_v110"),
                         "plugin_config", "refuse", 1, "params"),
               ACT_NONE, &r);
    check_exit(&r, "failed", 2, 0);
    assert_non_null(strstr(exit_message(&r), "init: the site configuration asks to refuse"));
    run_free(&r);

    /* vset_error through the plugin's own variadic function. */
    run_worker(json_pack("{s:s, s:{s:i, s:b}}", "plugin_path", TEST_PLUGIN("lifecycle_v110"),
                         "params", "lo", -7, "fail", 1),
               ACT_NONE, &r);
    check_exit(&r, "failed", 3, 0);
    assert_string_equal(exit_message(&r), "lifecycle 1.1.0: failing as asked (lo=-7)");
    run_free(&r);
}

/* A plugin built against ABI 1.0 (1.0 struct sizes) and one written in C++ both load and run. */
static void test_abi10_and_cxx(void **state)
{
    struct run r;
    run_worker(json_pack("{s:s, s:{}}", "plugin_path", TEST_PLUGIN("abi10"), "params"),
               ACT_NONE, &r);
    check_exit(&r, "succeeded", 0, 0);
    char *log = job_file(&r, "log");
    log_has(log, "abi10: host 1.1 table_ok=1 n=2");
    free(log);
    run_free(&r);

    int code;
    json_t *d = describe(TEST_PLUGIN("cxx"), &code);
    assert_int_equal(code, 0);
    assert_string_equal(json_string_value(json_object_get(d, "name")), "cxx");
    json_decref(d);
    run_worker(json_pack("{s:s, s:{s:[i,i]}}", "plugin_path", TEST_PLUGIN("cxx"), "params",
                         "values", 4, 5),
               ACT_NONE, &r);
    check_exit(&r, "succeeded", 0, 0);
    log = job_file(&r, "log");
    log_has(log, "cxx: sum=9");
    free(log);
    run_free(&r);
    run_worker(json_pack("{s:s, s:{s:b}}", "plugin_path", TEST_PLUGIN("cxx"), "params",
                         "throw_inside", 1),
               ACT_NONE, &r);
    check_exit(&r, "failed", 1, 0);
    assert_string_equal(exit_message(&r), "cxx: asked to throw");
    run_free(&r);
}

static void test_no_events_fd(void **state)
{
    /* By hand: no --events-fd, the exit line goes to stderr. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' --spec /nonexistent/spec.json 2>&1", JZ_WORKER_BIN);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    int st = pclose(p);
    assert_int_equal(WEXITSTATUS(st), 1);
    json_t *ev = json_loads(buf, 0, NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "exit");
    assert_string_equal(json_string_value(json_object_get(ev, "status")), "failed");
    json_decref(ev);
}

static void test_bad_spec(void **state)
{
    struct run r;
    /* A relative plugin path is refused before anything runs. */
    run_worker(json_pack("{s:s}", "plugin_path", "batch.so"), ACT_NONE, &r);
    assert_int_equal(json_array_size(r.events), 1);
    json_t *ev = last_event(&r);
    assert_string_equal(json_string_value(json_object_get(ev, "status")), "failed");
    assert_non_null(strstr(exit_message(&r), "absolute path"));
    assert_int_equal(WEXITSTATUS(r.wstatus), 1);
    run_free(&r);
}

int main(void)
{
    /* The worker keeps thread settings already in its environment: start from none. */
    unsetenv("OMP_NUM_THREADS");
    unsetenv("OPENBLAS_NUM_THREADS");
    unsetenv("OMP_WAIT_POLICY");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe_ok),
        cmocka_unit_test(test_describe_refused),
        cmocka_unit_test(test_batch_exit_code_env_log),
        cmocka_unit_test(test_batch_success_bound),
        cmocka_unit_test(test_batch_bind_refused),
        cmocka_unit_test(test_batch_bind_memory),
        cmocka_unit_test(test_batch_signal),
        cmocka_unit_test(test_batch_signal_mask),
        cmocka_unit_test(test_batch_path_search),
        cmocka_unit_test(test_batch_exec_failure),
        cmocka_unit_test(test_crash),
        cmocka_unit_test(test_hang_time_limit),
        cmocka_unit_test(test_sleeper_cancelled),
        cmocka_unit_test(test_sleeper_fail_and_bad_params),
        cmocka_unit_test(test_example_resume_and_checkpoint),
        cmocka_unit_test(test_host_functions),
        cmocka_unit_test(test_sha256_checked),
        cmocka_unit_test(test_hooks),
        cmocka_unit_test(test_abi10_and_cxx),
        cmocka_unit_test(test_no_events_fd),
        cmocka_unit_test(test_bad_spec),
    };
    /* A worker that never stops would otherwise hang the suite until ctest's timeout; the
     * workers die with this process (PR_SET_PDEATHSIG). */
    alarm(120);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
