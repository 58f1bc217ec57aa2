/* Logging core: timestamped lines to one sink: standard error, a file that SIGUSR1 reopens
 * (logrotate), or the systemd journal through its native datagram protocol (which keeps each
 * line's priority and component as fields). */
#define _GNU_SOURCE /* dup3 */
#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The sinks are switched on the loop's thread while other threads (the store's writer) log, so
 * a sink is never closed once in use: a new file is dup2()ed over the FILE's descriptor, a new
 * journal socket over the old one, and going back to standard error dup2()s it over the file's
 * descriptor. */
static FILE *log_sink;          /* __atomic; NULL: stderr */
static int log_max = JZ_SEV_INFO; /* __atomic */
static int use_journal;         /* __atomic */
static int journal_fd = -1;     /* __atomic; never closed once open */
/* A file sink: its path, for reopening (loop thread only). */
static char log_path[4096];
/* The journal's SYSLOG_IDENTIFIER, set before the journal is first used. */
static char journal_ident[64];

void jz_log_init(FILE *sink, enum jz_log_sev max_level)
{
    __atomic_store_n(&log_sink, sink, __ATOMIC_RELEASE);
    __atomic_store_n(&log_max, (int)max_level, __ATOMIC_RELAXED);
}

void jz_log_set_level(enum jz_log_sev max_level)
{
    __atomic_store_n(&log_max, (int)max_level, __ATOMIC_RELAXED);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int jz_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

const char *jz_log_level_name(enum jz_log_sev sev)
{
    return (int)sev >= 0 && sev <= JZ_SEV_DEBUG ? level_names[sev] : "info";
}

static int open_journal(const char *socket_path, const char *ident, struct jz_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof sa.sun_path)
        return jz_error_set(err, JZ_EINVAL, "journal socket path too long");
    memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return jz_error_set(err, JZ_EIO, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return jz_error_set(err, JZ_EIO, "cannot reach the journal at %s: %s", socket_path,
                            strerror(e));
    }
    int old = __atomic_load_n(&journal_fd, __ATOMIC_ACQUIRE);
    if (old >= 0) {
        if (dup3(fd, old, O_CLOEXEC) < 0) {
            int e = errno;
            close(fd);
            return jz_error_set(err, JZ_EIO, "cannot switch the journal socket: %s",
                                strerror(e));
        }
        close(fd);
    } else {
        if (!journal_ident[0])
            jz_strlcpy(journal_ident, ident, sizeof journal_ident);
        __atomic_store_n(&journal_fd, fd, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&use_journal, 1, __ATOMIC_RELEASE);
    log_path[0] = '\0';
    return 0;
}

/* A file to append to: never through a symbolic link, and only a regular file with one name
 * (jazarid opens it as root before it drops to its account, which may own the folder). */
static int open_file(const char *path, struct jz_error *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0640);
    if (fd < 0)
        return jz_error_set(err, JZ_EIO, "cannot open %s: %s%s", path, strerror(errno),
                            errno == ELOOP ? " (a symbolic link is refused)" : "");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        close(fd);
        return jz_error_set(err, JZ_EINVAL, "%s: not a regular file with one name", path);
    }
    FILE *sink = __atomic_load_n(&log_sink, __ATOMIC_ACQUIRE);
    if (sink && sink != stderr) {
        /* Same FILE, new file under it: lines in flight on other threads go to one or the
         * other, never nowhere. */
        fflush(sink);
        if (dup3(fd, fileno(sink), O_CLOEXEC) < 0) {
            int e = errno;
            close(fd);
            return jz_error_set(err, JZ_EIO, "cannot switch to %s: %s", path, strerror(e));
        }
        close(fd);
    } else {
        FILE *f = fdopen(fd, "a");
        if (!f) {
            close(fd);
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        }
        __atomic_store_n(&log_sink, f, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&use_journal, 0, __ATOMIC_RELEASE);
    jz_strlcpy(log_path, path, sizeof log_path);
    return 0;
}

int jz_log_open(const char *dest, const char *ident, enum jz_log_sev max_level,
                struct jz_error *err)
{
    int rc = 0;
    if (!dest || !*dest) {
        FILE *sink = __atomic_load_n(&log_sink, __ATOMIC_ACQUIRE);
        if (sink && sink != stderr) {
            fflush(sink);
            if (dup3(STDERR_FILENO, fileno(sink), O_CLOEXEC) < 0)
                rc = jz_error_set(err, JZ_EIO, "cannot switch to standard error: %s",
                                  strerror(errno));
        }
        if (!rc) {
            __atomic_store_n(&use_journal, 0, __ATOMIC_RELEASE);
            log_path[0] = '\0';
        }
    } else if (strcmp(dest, "journal") == 0) {
        rc = open_journal("/run/systemd/journal/socket", ident, err);
    } else if (strncmp(dest, "journal:", 8) == 0) {
        rc = open_journal(dest + 8, ident, err);
    } else {
        rc = open_file(dest, err);
    }
    if (!rc)
        jz_log_set_level(max_level);
    return rc;
}

int jz_log_reopen(struct jz_error *err)
{
    if (!log_path[0] || __atomic_load_n(&use_journal, __ATOMIC_ACQUIRE))
        return 0; /* standard error and the journal need no reopening */
    char path[sizeof log_path];
    jz_strlcpy(path, log_path, sizeof path);
    return open_file(path, err);
}

/* journald's native protocol: one datagram of KEY=VALUE lines. Messages are one line. */
static void to_journal(enum jz_log_sev sev, const char *component, const char *line)
{
    static const int priority[] = {3, 4, 6, 7}; /* err, warning, info, debug (syslog) */
    char msg[2400];
    int n = snprintf(msg, sizeof msg, "PRIORITY=%d\nSYSLOG_IDENTIFIER=%s\nJAZARI_COMPONENT=%s\n"
                     "MESSAGE=%s: %s\n", priority[sev], journal_ident, component, component, line);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    msg[len - 1] = '\n';
    /* A full journal drops the line rather than block the event loop. */
    (void)send(__atomic_load_n(&journal_fd, __ATOMIC_ACQUIRE), msg, len,
               MSG_DONTWAIT | MSG_NOSIGNAL);
}

void jz_log(enum jz_log_sev sev, const char *component, const char *fmt, ...)
{
    static const char *tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if ((int)sev > __atomic_load_n(&log_max, __ATOMIC_RELAXED))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (char *p = line; *p; p++) /* one entry per call, wherever it goes */
        if (*p == '\n')
            *p = ' ';
    if (__atomic_load_n(&use_journal, __ATOMIC_ACQUIRE)) {
        to_journal(sev, component, line);
        return;
    }
    FILE *sink = __atomic_load_n(&log_sink, __ATOMIC_ACQUIRE);
    FILE *out = sink ? sink : stderr;
    char ts[40];
    jz_time_format_iso(jz_time_now_ms(), ts, sizeof ts);
    fprintf(out, "%s %-5s %s: %s\n", ts, tags[sev], component, line);
    fflush(out);
}
