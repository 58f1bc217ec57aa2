/* Tests of common/ helpers: cpulist parse/format, duration parse/format, JSON parse limits,
 * safe names and bounded copies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/beneath.h"
#include "common/cpulist.h"
#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"

static void check_cpulist(const char *in, const char *canonical, size_t n)
{
    int *cpus = NULL;
    size_t count = 0;
    struct jz_error err;
    assert_int_equal(jz_cpulist_parse(in, &cpus, &count, &err), 0);
    assert_int_equal(count, n);
    char buf[128];
    assert_int_equal(jz_cpulist_format(cpus, count, buf, sizeof buf), 0);
    assert_string_equal(buf, canonical);
    free(cpus);
}

static void test_cpulist(void **state)
{
    check_cpulist("", "", 0);
    check_cpulist("0", "0", 1);
    check_cpulist("0-3", "0-3", 4);
    check_cpulist("8,0-3,2,9", "0-3,8-9", 6);
    check_cpulist("5,4,3", "3-5", 3);
    const char *bad[] = {"a", "1-", "-1", "3-1", "1,,2", "1 2", "8192", "0-8192"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int *cpus = (int *)0x1;
        size_t n = 99;
        struct jz_error err;
        int rc = jz_cpulist_parse(bad[i], &cpus, &n, &err);
        assert_int_equal(rc, JZ_EINVAL);
        assert_ptr_equal(cpus, (int *)0x1); /* outputs untouched on failure */
        assert_int_equal(n, 99);
        assert_non_null(strstr(err.msg, "bad CPU list"));
    }
    int cpus[] = {0, 1, 2, 3, 10};
    char small[4];
    assert_int_equal(jz_cpulist_format(cpus, 5, small, sizeof small), JZ_ERANGE);
}

static void test_duration(void **state)
{
    struct {
        const char *in;
        int64_t secs;
    } ok[] = {{"90", 90},     {"90s", 90},         {"30m", 1800},      {"1h30m", 5400},
              {"2d", 172800}, {"1d1h1m1s", 90061}, {"01:02:03", 3723}, {"0", 0},
              /* Slurm's forms: MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS. */
              {"90:00", 5400},    {"1:30", 90},        {"100:00:00", 360000},
              {"1-00:00:00", 86400}, {"2-3", 183600},  {"1-2:03", 93780},
              {"0-0:0:1", 1},     {"7-23:59:59", 691199}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        struct jz_error err;
        assert_int_equal(jz_duration_parse(ok[i].in, &v, &err), 0);
        assert_int_equal(v, ok[i].secs);
    }
    const char *bad[] = {"",        "x",       "1x",         "-5",       "1:99:00", "1h 30m",
                         "1:2:-0",  "1-24",    "1-1:60",     "1:60",     "1-",      "-1",
                         "1--2",    "1:2:3:4", "1-1:2:3:4",  ":30",      "30:",     "1::2",
                         "1-2h",    "1h-2",    "2026-12-31", "2026-12",  "1:2:3s",  " 1:00",
                         "1:+2",    "1-1-1",   "12345678:00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 77;
        struct jz_error err;
        assert_int_equal(jz_duration_parse(bad[i], &v, &err), JZ_EINVAL);
        assert_int_equal(v, 77);
    }
    int64_t v;
    struct jz_error err;
    assert_int_equal(jz_duration_parse("99999999999d", &v, &err), JZ_ERANGE);
    assert_int_equal(jz_duration_parse(NULL, &v, &err), JZ_EINVAL);

    char buf[32];
    jz_duration_format(5400, buf, sizeof buf);
    assert_string_equal(buf, "1h30m");
    jz_duration_format(45, buf, sizeof buf);
    assert_string_equal(buf, "45s");
    jz_duration_format(172800, buf, sizeof buf);
    assert_string_equal(buf, "2d");
    jz_duration_format(0, buf, sizeof buf);
    assert_string_equal(buf, "0s");
    jz_duration_format(-3, buf, sizeof buf);
    assert_string_equal(buf, "0s");
    /* Round trip. */
    jz_duration_format(90061, buf, sizeof buf);
    assert_int_equal(jz_duration_parse(buf, &v, &err), 0);
    assert_int_equal(v, 90061);
}

static void test_json_limits(void **state)
{
    struct jz_error err;
    json_t *v = jz_json_parse("{\"a\": [1, {\"b\": 2}]}", 20, 3, &err);
    assert_non_null(v);
    json_decref(v);
    /* Depth 3 passes at limit 3, fails at limit 2. */
    v = jz_json_parse("{\"a\": [1, {\"b\": 2}]}", 20, 2, &err);
    assert_null(v);
    assert_int_equal(err.code, JZ_ELIMIT);
    char deep[512];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    for (int i = 0; i < 100; i++)
        deep[n++] = ']';
    v = jz_json_parse(deep, n, 64, &err);
    assert_null(v);
    assert_int_equal(err.code, JZ_ELIMIT);
    v = jz_json_parse("{\"a\": 1, \"a\": 2}", 16, 8, &err);
    assert_null(v); /* duplicate keys are refused */
    assert_int_equal(err.code, JZ_EINVAL);
    v = jz_json_parse("{\"a\": ", 6, 8, &err);
    assert_null(v);
    assert_non_null(strstr(err.msg, "line 1"));

    assert_string_equal(jz_json_str(NULL, "x", "fb"), "fb");
    json_t *o = json_pack("{s:s, s:i, s:f, s:b}", "s", "v", "i", 5, "f", 1.5, "b", 1);
    assert_string_equal(jz_json_str(o, "s", NULL), "v");
    assert_int_equal(jz_json_int(o, "i", 0), 5);
    assert_int_equal(jz_json_int(o, "s", -1), -1);
    assert_true(jz_json_num(o, "f", 0) == 1.5);
    assert_true(jz_json_num(o, "i", 0) == 5.0);
    assert_true(jz_json_bool(o, "b", false));
    assert_false(jz_json_bool(o, "i", false));
    json_decref(o);
}

static void test_json_files(void **state)
{
    char dir[] = "/tmp/jz-test-common-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/x.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"k\": 42}", f);
    fclose(f);
    struct jz_error err;
    json_t *o = jz_json_load_file(path, 1024, &err);
    assert_non_null(o);
    assert_int_equal(jz_json_int(o, "k", 0), 42);
    json_decref(o);
    assert_null(jz_json_load_file(path, 4, &err)); /* larger than the limit */
    assert_int_equal(err.code, JZ_ELIMIT);
    unlink(path);
    assert_null(jz_json_load_file(path, 1024, &err));
    assert_int_equal(err.code, JZ_EIO);
    rmdir(dir);
}

static void test_time_parse_iso(void **state)
{
    int64_t ms = 0;
    struct jz_error err = {0};
    assert_int_equal(jz_time_parse_iso("2026-11-25T19:00:00.123Z", &ms, &err), 0);
    assert_true(ms == 1795633200123LL);
    assert_int_equal(jz_time_parse_iso("2024-02-29T23:59:59.005Z", &ms, &err), 0);
    assert_true(ms == 1709251199005LL);
    assert_int_equal(jz_time_parse_iso("2024-02-29T23:59:59Z", &ms, &err), 0);
    assert_true(ms == 1709251199000LL);
    ms = 7;
    assert_int_equal(jz_time_parse_iso("2026-11-25 19:00:00.123Z", &ms, &err), JZ_EINVAL);
    assert_int_equal(jz_time_parse_iso("2026-11-25T19:00:00.123", &ms, &err), JZ_EINVAL);
    assert_int_equal(jz_time_parse_iso("2026-13-25T19:00:00.123Z", &ms, &err), JZ_EINVAL);
    assert_int_equal(jz_time_parse_iso("2026-11-25T19:00:00.Z", &ms, &err), JZ_EINVAL);
    assert_int_equal(jz_time_parse_iso(NULL, &ms, &err), JZ_EINVAL);
    assert_true(ms == 7); /* untouched on failure */
    /* What jz_time_format_iso writes reads back the same; a lone fraction digit is tenths. */
    char buf[40];
    jz_time_format_iso(1795633200123LL, buf, sizeof buf);
    assert_int_equal(jz_time_parse_iso(buf, &ms, &err), 0);
    assert_true(ms == 1795633200123LL);
    assert_int_equal(jz_time_parse_iso("2026-11-25T19:00:00.5Z", &ms, &err), 0);
    assert_true(ms == 1795633200500LL);
    assert_int_equal(jz_time_parse_iso("2026-11-25T19:00:00Zjunk", &ms, &err), JZ_EINVAL);
}

static void test_strutil(void **state)
{
    assert_true(jz_name_is_safe("model.bin", 64));
    assert_true(jz_name_is_safe("a-b_c", 64));
    assert_false(jz_name_is_safe("", 64));
    assert_false(jz_name_is_safe(".hidden", 64));
    assert_false(jz_name_is_safe("a/b", 64));
    assert_false(jz_name_is_safe("..", 64));
    assert_false(jz_name_is_safe("abcdef", 5));
    char buf[4];
    assert_true(jz_strlcpy(buf, "abc", sizeof buf));
    assert_false(jz_strlcpy(buf, "abcd", sizeof buf));
    assert_string_equal(buf, "abc");
}

/* jz_mkdir_p: one new folder, a chain of them, existing ones, and the errors. */
static void test_mkdir_p(void **state)
{
    char root[] = "/tmp/jz-mkdir-XXXXXX", path[256];
    assert_non_null(mkdtemp(root));
    struct stat st;
    snprintf(path, sizeof path, "%s/a", root); /* in a folder that exists */
    assert_int_equal(jz_mkdir_p(path, 0750), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0750 & ~umask(umask(0)));
    snprintf(path, sizeof path, "%s/b/c/d", root); /* parents made too */
    assert_int_equal(jz_mkdir_p(path, 0700), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(jz_mkdir_p(path, 0700), 0); /* exists: fine */
    snprintf(path, sizeof path, "%s/b/c/d/", root); /* a trailing slash */
    assert_int_equal(jz_mkdir_p(path, 0700), 0);
    snprintf(path, sizeof path, "%s/file", root); /* a file on the way: an error */
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof path, "%s/file/x/y", root);
    assert_int_equal(jz_mkdir_p(path, 0700), JZ_EIO);
    char longp[PATH_MAX + 64];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    assert_int_equal(jz_mkdir_p(longp, 0700), JZ_ERANGE);
    assert_int_equal(jz_remove_tree(root), 0);
}

/* A job's folder: a file, a subfolder, and every trick a job could play to have something
 * else served from it. */
static void test_open_beneath(void **state)
{
    (void)state;
    char root[] = "/tmp/jz-beneath-XXXXXX";
    assert_non_null(mkdtemp(root));
    char path[256], outside[256];
    snprintf(outside, sizeof outside, "%s.secret", root);
    FILE *f = fopen(outside, "w");
    assert_non_null(f);
    fputs("secret", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/out", root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/out/ok", root);
    f = fopen(path, "w");
    fputs("ok", f);
    fclose(f);
    int fd = jz_open_beneath(root, "out/ok", O_RDONLY, (uid_t)-1);
    assert_true(fd >= 0);
    close(fd);
    /* A symbolic link as the last component, and as a folder on the way. */
    snprintf(path, sizeof path, "%s/log", root);
    assert_int_equal(symlink(outside, path), 0);
    errno = 0;
    assert_int_equal(jz_open_beneath(root, "log", O_RDONLY, (uid_t)-1), -1);
    assert_int_equal(errno, EPERM);
    snprintf(path, sizeof path, "%s/link", root);
    assert_int_equal(symlink("/tmp", path), 0);
    assert_int_equal(jz_open_beneath(root, "link/x", O_RDONLY, (uid_t)-1), -1);
    /* Escapes by name. */
    assert_int_equal(jz_open_beneath(root, "../x", O_RDONLY, (uid_t)-1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(jz_open_beneath(root, "/etc/passwd", O_RDONLY, (uid_t)-1), -1);
    assert_int_equal(jz_open_beneath(root, "out/./ok", O_RDONLY, (uid_t)-1), -1);
    /* A hard link to a file of another owner (here: the owner we expect is someone else). */
    snprintf(path, sizeof path, "%s/out/hard", root);
    assert_int_equal(link(outside, path), 0);
    uid_t other = getuid() + 1;
    assert_int_equal(jz_open_beneath(root, "out/hard", O_RDONLY, other), -1);
    assert_int_equal(errno, EPERM);
    fd = jz_open_beneath(root, "out/hard", O_RDONLY, getuid()); /* its own file: fine */
    assert_true(fd >= 0);
    close(fd);
    /* A FIFO in place of the log: refused at once, not waited on. */
    snprintf(path, sizeof path, "%s/out/fifo", root);
    assert_int_equal(mkfifo(path, 0600), 0);
    errno = 0;
    assert_int_equal(jz_open_beneath(root, "out/fifo", O_RDONLY, (uid_t)-1), -1);
    assert_int_equal(errno, EPERM);
    unlink(path);
    /* A FIFO in place of the log: refused at once, not waited on. */
    snprintf(path, sizeof path, "%s/out/fifo", root);
    assert_int_equal(mkfifo(path, 0600), 0);
    errno = 0;
    assert_int_equal(jz_open_beneath(root, "out/fifo", O_RDONLY, (uid_t)-1), -1);
    assert_int_equal(errno, EPERM);
    unlink(path);
    /* The root itself a symbolic link. */
    char alias[256];
    snprintf(alias, sizeof alias, "%s.alias", root);
    assert_int_equal(symlink(root, alias), 0);
    assert_int_equal(jz_open_beneath(alias, "out/ok", O_RDONLY, (uid_t)-1), -1);
    unlink(alias);
    snprintf(path, sizeof path, "%s/out/hard", root), unlink(path);
    snprintf(path, sizeof path, "%s/out/ok", root), unlink(path);
    snprintf(path, sizeof path, "%s/out", root), rmdir(path);
    snprintf(path, sizeof path, "%s/log", root), unlink(path);
    snprintf(path, sizeof path, "%s/link", root), unlink(path);
    rmdir(root);
    unlink(outside);
}

/* "Did you mean" hints: edit distance, and only near misses are suggested. */
static void test_nearest(void **state)
{
    assert_int_equal(jz_str_distance("sumbit", "submit"), 2);
    assert_int_equal(jz_str_distance("", "abc"), 3);
    assert_int_equal(jz_str_distance("queue", "queue"), 0);
    const char *cmds[] = {"submit", "queue", NULL, "show", "logs"};
    assert_string_equal(jz_str_nearest("sumbit", cmds, 5), "submit");
    assert_string_equal(jz_str_nearest("qeueu", cmds, 5), "queue");
    assert_string_equal(jz_str_nearest("log", cmds, 5), "logs");
    assert_null(jz_str_nearest("x", cmds, 5));
    assert_null(jz_str_nearest("frobnicate", cmds, 5));
    char big[100];
    memset(big, 'a', sizeof big - 1);
    big[99] = '\0';
    assert_null(jz_str_nearest(big, cmds, 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpulist),     cmocka_unit_test(test_duration), cmocka_unit_test(test_nearest),
        cmocka_unit_test(test_json_limits), cmocka_unit_test(test_json_files),
        cmocka_unit_test(test_strutil), cmocka_unit_test(test_time_parse_iso),
        cmocka_unit_test(test_mkdir_p),
        cmocka_unit_test(test_open_beneath),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
