/* The plugin registry on a temporary plugin folder: what is listed, what NAME and NAME@VERSION
 * select, the private copies, and what a reload keeps, adds and drops. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "server/plugins.h"

#define TEST_PLUGIN(name) JZ_TEST_PLUGIN_DIR "/" name ".so"

struct fixture {
    char root[64], dir[128], copies[128];
};

static void copy_file(const char *from, const char *dir, const char *name)
{
    /* Written beside, renamed over: how an upgrade replaces a file. */
    char tmp[512], to[512], cmd[1400];
    snprintf(tmp, sizeof tmp, "%s/.%s.new", dir, name);
    snprintf(to, sizeof to, "%s/%s", dir, name);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, tmp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rename(tmp, to), 0);
}

static void remove_file(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(unlink(path), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/jz-test-registry-XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/plugins", f->root);
    snprintf(f->copies, sizeof f->copies, "%s/state/plugins", f->root);
    mkdir(f->dir, 0755);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static struct jz_plugins *load(const struct fixture *f, const json_t *site)
{
    char dirs[300];
    /* A missing folder is a warning, not an error. */
    snprintf(dirs, sizeof dirs, "%s/missing:%s", f->root, f->dir);
    struct jz_plugins_config cfg = {.dirs = dirs, .worker_path = JZ_WORKER_BIN,
                                    .copies_dir = f->copies, .site = site};
    struct jz_plugins *p = NULL;
    struct jz_error err = {0};
    if (jz_plugins_load(&cfg, &p, &err) != 0)
        fail_msg("load: %s", err.msg);
    return p;
}

static const char *version_of(const struct jz_plugins *p, const char *spec)
{
    const struct jz_plugin_entry *e = jz_plugins_find(p, spec);
    return e ? e->version : NULL;
}

static void test_versions_side_by_side(void **state)
{
    struct fixture *f = *state;
    copy_file(TEST_PLUGIN("lifecycle_v100"), f->dir, "lifecycle-1.0.0.so");
    copy_file(TEST_PLUGIN("lifecycle_v110"), f->dir, "lifecycle-1.1.0.so");
    copy_file(TEST_PLUGIN("lifecycle_v100"), f->dir, "zz-same-bytes.so");
    copy_file(TEST_PLUGIN("badabi"), f->dir, "badabi.so");
    struct jz_plugins *p = load(f, NULL);
    assert_int_equal(jz_plugins_count(p), 4);

    assert_string_equal(version_of(p, "lifecycle"), "1.1.0");
    assert_true(jz_plugins_find(p, "lifecycle")->is_default);
    assert_string_equal(version_of(p, "lifecycle@1.0.0"), "1.0.0");
    assert_false(jz_plugins_find(p, "lifecycle@1.0.0")->is_default);
    assert_string_equal(version_of(p, "lifecycle@1.0"), "1.0.0");
    assert_string_equal(version_of(p, "lifecycle@1"), "1.1.0");
    assert_string_equal(version_of(p, "lifecycle@1.1"), "1.1.0");
    assert_null(jz_plugins_find(p, "lifecycle@1.1.00")); /* a prefix ends at a separator */
    assert_null(jz_plugins_find(p, "lifecycle@2"));
    assert_null(jz_plugins_find(p, "lifecycle@"));
    assert_null(jz_plugins_find(p, "badabi"));

    /* The same bytes twice: one version, the other file listed as refused. */
    const struct jz_plugin_entry *old = jz_plugins_find(p, "lifecycle@1.0.0");
    assert_non_null(strstr(old->path, "lifecycle-1.0.0.so"));
    json_t *list = jz_plugins_json(p);
    size_t i, refused = 0;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *reason = json_string_value(json_object_get(e, "reason"));
        if (!reason)
            continue;
        refused++;
        if (strstr(json_string_value(json_object_get(e, "path")), "zz-same-bytes.so"))
            assert_non_null(strstr(reason, "is already provided by"));
        else /* a refusal names the folder's file, not the private copy */
            assert_non_null(strstr(reason, "plugin ABI 99.0 is not supported"));
        assert_null(strstr(reason, "/state/plugins/"));
    }
    assert_int_equal(refused, 2);
    json_decref(list);
    assert_non_null(jz_plugins_find_refused(p, "badabi@1.0"));

    /* Private copies by content, private to the service; none of a refused file. */
    char copy[512];
    assert_int_equal(jz_plugins_copy_path(p, old->sha256, copy, sizeof copy), 0);
    assert_string_equal(copy, old->copy);
    struct stat st;
    assert_int_equal(stat(copy, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_ptr_equal(jz_plugins_find_sha256(p, old->sha256), old);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 2", f->copies);
    assert_int_equal(system(cmd), 0);
    jz_plugins_free(p);
}

static void test_reload(void **state)
{
    struct fixture *f = *state;
    copy_file(TEST_PLUGIN("lifecycle_v100"), f->dir, "lifecycle.so");
    copy_file(TEST_PLUGIN("sleeper"), f->dir, "sleeper.so");
    struct jz_plugins *p = load(f, NULL);
    char sha100[65];
    snprintf(sha100, sizeof sha100, "%s", jz_plugins_find(p, "lifecycle")->sha256);
    size_t added = 9, removed = 9;
    struct jz_error err = {0};

    /* Nothing changed: nothing new, nothing gone. */
    assert_int_equal(jz_plugins_reload(&p, &added, &removed, &err), 0);
    assert_int_equal(added, 0);
    assert_int_equal(removed, 0);

    /* 1.1.0 renamed over 1.0.0: one new, one gone; the old copy stays for its jobs. */
    copy_file(TEST_PLUGIN("lifecycle_v110"), f->dir, "lifecycle.so");
    assert_int_equal(jz_plugins_reload(&p, &added, &removed, &err), 0);
    assert_int_equal(added, 1);
    assert_int_equal(removed, 1);
    assert_string_equal(version_of(p, "lifecycle"), "1.1.0");
    assert_null(jz_plugins_find(p, "lifecycle@1.0.0"));
    assert_null(jz_plugins_find_sha256(p, sha100));
    char copy[512];
    assert_int_equal(jz_plugins_copy_path(p, sha100, copy, sizeof copy), 0);
    assert_int_equal(access(copy, R_OK), 0);

    /* A file removed disappears. */
    remove_file(f->dir, "sleeper.so");
    assert_int_equal(jz_plugins_reload(&p, &added, &removed, &err), 0);
    assert_int_equal(added, 0);
    assert_int_equal(removed, 1);
    assert_null(jz_plugins_find(p, "sleeper"));
    assert_int_equal(jz_plugins_count(p), 1);
    jz_plugins_free(p);
}

static void test_site_config(void **state)
{
    struct fixture *f = *state;
    json_t *site = json_pack("{s:{s:s}}", "lifecycle", "greeting", "hello");
    struct jz_plugins *p = load(f, site);
    const json_t *c = jz_plugins_site_config(p, "lifecycle");
    assert_string_equal(json_string_value(json_object_get(c, "greeting")), "hello");
    assert_null(jz_plugins_site_config(p, "other"));
    jz_plugins_free(p);
    json_decref(site);

    /* Each plugin's entry must be an object. */
    site = json_pack("{s:i}", "lifecycle", 5);
    struct jz_plugins_config cfg = {.dirs = f->dir, .worker_path = JZ_WORKER_BIN, .site = site};
    struct jz_error err = {0};
    assert_int_equal(jz_plugins_load(&cfg, &p, &err), JZ_EINVAL);
    assert_non_null(strstr(err.msg, "plugins.lifecycle"));
    json_decref(site);
}

static const struct jz_plugin_entry *entry_at(const struct jz_plugins *p, const char *file)
{
    json_t *list = jz_plugins_json(p);
    size_t i;
    json_t *e;
    const char *name = NULL;
    json_array_foreach(list, i, e)
    {
        if (strstr(json_string_value(json_object_get(e, "path")), file)) {
            name = json_string_value(json_object_get(e, "name"));
            break;
        }
    }
    const struct jz_plugin_entry *found = name ? jz_plugins_find(p, name) : NULL;
    if (!found && name)
        found = jz_plugins_find_refused(p, name);
    json_decref(list);
    return found;
}

/* A refusal is not cached: a plugin refused for a passing reason (here its constructor failed
 * while a file existed) is described again at the next reload, its file unchanged. */
static void test_refusal_described_again(void **state)
{
    struct fixture *f = *state;
    char flag[200], mood[300];
    snprintf(flag, sizeof flag, "%s/refuse", f->root);
    snprintf(mood, sizeof mood, "fail-if:%s", flag);
    FILE *fl = fopen(flag, "w");
    assert_non_null(fl);
    fclose(fl);
    setenv("JAZARI_TEST_MOODY", mood, 1);
    copy_file(TEST_PLUGIN("moody"), f->dir, "moody.so");
    struct jz_plugins *p = load(f, NULL);
    assert_null(jz_plugins_find(p, "moody"));
    const struct jz_plugin_entry *e = entry_at(p, "moody.so");
    assert_non_null(e);
    assert_false(e->ok);
    assert_non_null(strstr(e->reason, "exit status 1"));
    unlink(flag);
    size_t added = 9, removed = 9;
    struct jz_error err = {0};
    assert_int_equal(jz_plugins_reload(&p, &added, &removed, &err), 0);
    unsetenv("JAZARI_TEST_MOODY");
    assert_non_null(jz_plugins_find(p, "moody"));
    assert_int_equal(added, 1);
    jz_plugins_free(p);
}

/* A process that describes fine but then exits non-zero, or is killed, is refused (as
 * `jazari plugin check` refuses it). */
static void test_bad_end_refused(void **state)
{
    struct fixture *f = *state;
    copy_file(TEST_PLUGIN("moody"), f->dir, "moody.so");
    const char *moods[] = {"exit", "signal"};
    const char *want[] = {"exited with status 3 after describing", "killed by signal 6"};
    for (int k = 0; k < 2; k++) {
        setenv("JAZARI_TEST_MOODY", moods[k], 1);
        struct jz_plugins *p = load(f, NULL);
        unsetenv("JAZARI_TEST_MOODY");
        const struct jz_plugin_entry *e = entry_at(p, "moody.so");
        assert_non_null(e);
        assert_false(e->ok);
        if (!strstr(e->reason, want[k]))
            fail_msg("reason: %s", e->reason);
        jz_plugins_free(p);
    }
}

/* A private copy whose bytes are not those its name says (truncated, damaged) is replaced,
 * not trusted by its name: the version stays usable. */
static void test_damaged_copy_replaced(void **state)
{
    struct fixture *f = *state;
    copy_file(TEST_PLUGIN("lifecycle_v100"), f->dir, "lifecycle.so");
    struct jz_plugins *p = load(f, NULL);
    char copy[600];
    snprintf(copy, sizeof copy, "%s", jz_plugins_find(p, "lifecycle")->copy);
    struct stat good;
    assert_int_equal(stat(copy, &good), 0);
    jz_plugins_free(p);
    assert_int_equal(truncate(copy, good.st_size / 2), 0);
    p = load(f, NULL); /* as at the next start */
    assert_non_null(jz_plugins_find(p, "lifecycle"));
    struct stat now;
    assert_int_equal(stat(copy, &now), 0);
    assert_int_equal(now.st_size, good.st_size);
    assert_int_equal(now.st_mode & 0777, 0600);
    jz_plugins_free(p);
    /* Other bytes of the same size too. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "printf 'XXXX' | dd of='%s' bs=1 seek=64 conv=notrunc 2>/dev/null",
             copy);
    assert_int_equal(system(cmd), 0);
    copy_file(TEST_PLUGIN("lifecycle_v100"), f->dir, "lifecycle.so"); /* described again */
    p = load(f, NULL);
    assert_non_null(jz_plugins_find(p, "lifecycle"));
    jz_plugins_free(p);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct async_run {
    struct jz_plugins *p;
    struct event_base *base;
    struct event *tick;
    int64_t last_tick_ms, max_gap_ms;
    bool lost_registry; /* the registry was not readable during the scan */
    int done, rc[2];
    size_t added[2], removed[2];
    int64_t done_ms[2];
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct async_run *r = arg;
    int64_t now = mono_ms();
    if (now - r->last_tick_ms > r->max_gap_ms)
        r->max_gap_ms = now - r->last_tick_ms;
    r->last_tick_ms = now;
    if (!jz_plugins_find(r->p, "lifecycle"))
        r->lost_registry = true;
}

static void on_reloaded(void *arg, int rc, size_t added, size_t removed, const char *why)
{
    struct async_run *r = arg;
    assert_true(r->done < 2);
    if (rc)
        fprintf(stderr, "reload failed: %s\n", why);
    r->rc[r->done] = rc;
    r->added[r->done] = added;
    r->removed[r->done] = removed;
    r->done_ms[r->done] = mono_ms();
    if (++r->done == 2)
        event_base_loopbreak(r->base);
}

/* The asynchronous reload: the loop keeps running while a slow plugin is described (its
 * constructor sleeps 2 s), the registry stays usable until the swap, a reload asked meanwhile
 * runs after it, and freeing the registry waits for a scan still running. */
static void test_reload_async(void **state)
{
    struct fixture *f = *state;
    copy_file(TEST_PLUGIN("lifecycle_v100"), f->dir, "lifecycle.so");
    copy_file(TEST_PLUGIN("moody"), f->dir, "moody.so");
    struct async_run r = {.p = load(f, NULL), .base = event_base_new()};
    assert_non_null(r.base);
    setenv("JAZARI_TEST_MOODY", "sleep:2", 1);
    copy_file(TEST_PLUGIN("moody"), f->dir, "moody.so"); /* a new file: described again */
    copy_file(TEST_PLUGIN("lifecycle_v110"), f->dir, "lifecycle.so");

    r.tick = event_new(r.base, -1, EV_PERSIST, on_tick, &r);
    struct timeval every = {0, 50 * 1000};
    event_add(r.tick, &every);
    struct jz_error err = {0};
    int64_t t0 = mono_ms();
    r.last_tick_ms = t0;
    assert_int_equal(jz_plugins_reload_start(&r.p, r.base, on_reloaded, &r, &err), 0);
    assert_true(mono_ms() - t0 < 500);
    assert_true(jz_plugins_reload_running(r.p));
    size_t a, b;
    assert_int_equal(jz_plugins_reload(&r.p, &a, &b, &err), JZ_EBUSY);
    /* Queued behind the running scan. */
    assert_int_equal(jz_plugins_reload_start(&r.p, r.base, on_reloaded, &r, &err), 0);
    struct timeval limit = {30, 0};
    event_base_loopexit(r.base, &limit);
    event_base_dispatch(r.base);
    assert_int_equal(r.done, 2);
    assert_true(r.done_ms[0] - t0 >= 2000); /* the scan was slow... */
    if (r.max_gap_ms > 500)                 /* ...and the loop was not */
        fail_msg("the event loop stalled %lld ms", (long long)r.max_gap_ms);
    assert_false(r.lost_registry);
    assert_int_equal(r.rc[0], 0);
    assert_int_equal(r.added[0], 1);   /* 1.1.0 */
    assert_int_equal(r.removed[0], 1); /* 1.0.0 */
    assert_int_equal(r.rc[1], 0);      /* nothing changed since */
    assert_int_equal(r.added[1], 0);
    assert_int_equal(r.removed[1], 0);
    assert_false(jz_plugins_reload_running(r.p));
    assert_string_equal(version_of(r.p, "lifecycle"), "1.1.0");
    assert_non_null(jz_plugins_find(r.p, "moody"));

    /* The synchronous form works again, and keeps the asynchronous state. */
    assert_int_equal(jz_plugins_reload(&r.p, &a, &b, &err), 0);
    copy_file(TEST_PLUGIN("moody"), f->dir, "moody.so");
    assert_int_equal(jz_plugins_reload_start(&r.p, r.base, NULL, NULL, &err), 0);
    /* Stopping meanwhile: freeing waits for the scan and drops it. */
    jz_plugins_free(r.p);
    unsetenv("JAZARI_TEST_MOODY");
    event_free(r.tick);
    event_base_free(r.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_versions_side_by_side, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_site_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_described_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_end_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_copy_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_async, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
