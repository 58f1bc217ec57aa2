/* Where the jazari client finds its server URL, token and CA file: flags, environment, token
 * file, config file, default — in that order. */
#include "clients/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/strutil.h"

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* A token goes into an HTTP header: refuse anything that could split or corrupt it. */
static bool token_ok(const char *t)
{
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        if (*p < 0x21 || *p > 0x7e)
            return false;
    return true;
}

static bool url_ok(const char *u)
{
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return false;
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p < 0x21 || *p > 0x7e)
            return false;
    return true;
}

/* jz_cli_config_parse, and the "ca" key into ca (JZ_CLI_MAX_CA_PATH bytes) when ca is not
 * NULL. */
static int parse_config(const char *text, size_t len, const char *origin, char *url, bool *has_url,
                        char *token, bool *has_token, char *ca, bool *has_ca,
                        struct jz_error *err)
{
    if (len > JZ_CLI_MAX_CONFIG)
        return jz_error_set(err, JZ_ELIMIT, "%s: larger than %u bytes", origin, JZ_CLI_MAX_CONFIG);
    char urlv[JZ_CLI_MAX_URL] = "", tokv[JZ_CLI_MAX_TOKEN] = "", cav[JZ_CLI_MAX_CA_PATH] = "";
    bool hu = false, ht = false, hc = false;
    size_t pos = 0;
    int lineno = 0;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char line[4096];
        if (n >= sizeof line)
            return jz_error_set(err, JZ_ELIMIT, "%s:%d: line too long", origin, lineno);
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + (nl ? 1 : 0);
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            return jz_error_set(err, JZ_EINVAL, "%s:%d: expected 'key = value'", origin, lineno);
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 &&
            ((val[0] == '"' && val[vl - 1] == '"') || (val[0] == '\'' && val[vl - 1] == '\''))) {
            val[vl - 1] = '\0';
            val++;
        }
        if (strcmp(key, "url") == 0) {
            if (!url_ok(val) || !jz_strlcpy(urlv, val, sizeof urlv))
                return jz_error_set(err, JZ_EINVAL,
                                    "%s:%d: url must start with http:// or https://", origin,
                                    lineno);
            hu = true;
        } else if (strcmp(key, "token") == 0) {
            /* Never echo the token itself in a message. */
            if (!token_ok(val) || !*val || !jz_strlcpy(tokv, val, sizeof tokv))
                return jz_error_set(err, JZ_EINVAL, "%s:%d: malformed token", origin, lineno);
            ht = true;
        } else if (strcmp(key, "ca") == 0 && ca) {
            if (!*val || !jz_strlcpy(cav, val, sizeof cav))
                return jz_error_set(err, JZ_EINVAL, "%s:%d: ca must be a file's path (at most %d "
                                    "bytes)", origin, lineno, JZ_CLI_MAX_CA_PATH - 1);
            hc = true;
        }
        /* Unknown keys are ignored so that newer files work with older clients. */
    }
    if (hu) {
        memcpy(url, urlv, sizeof urlv);
        *has_url = true;
    }
    if (ht) {
        memcpy(token, tokv, sizeof tokv);
        *has_token = true;
    }
    if (hc) {
        memcpy(ca, cav, sizeof cav);
        *has_ca = true;
    }
    return 0;
}

int jz_cli_config_parse(const char *text, size_t len, const char *origin, char *url, bool *has_url,
                        char *token, bool *has_token, struct jz_error *err)
{
    return parse_config(text, len, origin, url, has_url, token, has_token, NULL, NULL, err);
}

/* Reads a small file whole; *text is malloc'd and NUL-terminated. A missing file gives
 * JZ_ENOENT without touching err, so that the default config path may be absent. */
static int read_small(const char *path, char **text, size_t *len, struct jz_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return JZ_ENOENT;
        return jz_error_set(err, JZ_EIO, "cannot open %.300s: %s", path, strerror(errno));
    }
    char *buf = malloc(JZ_CLI_MAX_CONFIG + 2);
    if (!buf) {
        fclose(f);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, JZ_CLI_MAX_CONFIG + 1, f);
    fclose(f);
    if (n > JZ_CLI_MAX_CONFIG) {
        free(buf);
        return jz_error_set(err, JZ_ELIMIT, "%.300s is larger than %u bytes", path,
                            JZ_CLI_MAX_CONFIG);
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

static int set_url(struct jz_cli *cli, const char *u, const char *origin, struct jz_error *err)
{
    if (!url_ok(u) || !jz_strlcpy(cli->url, u, sizeof cli->url))
        return jz_error_set(err, JZ_EINVAL, "%s: url must start with http:// or https://", origin);
    return 0;
}

static int set_token(struct jz_cli *cli, const char *t, const char *origin, struct jz_error *err)
{
    if (!*t || !token_ok(t) || !jz_strlcpy(cli->token, t, sizeof cli->token))
        return jz_error_set(err, JZ_EINVAL, "%s: malformed token", origin);
    return 0;
}

static int set_ca(struct jz_cli *cli, const char *ca, const char *origin, struct jz_error *err)
{
    if (!*ca || !jz_strlcpy(cli->ca, ca, sizeof cli->ca))
        return jz_error_set(err, JZ_EINVAL, "%s: expected a CA file's path (at most %d bytes)",
                            origin, JZ_CLI_MAX_CA_PATH - 1);
    if (access(cli->ca, R_OK) != 0)
        return jz_error_set(err, JZ_EINVAL, "%s: cannot read the CA file %.300s: %s", origin,
                            cli->ca, strerror(errno));
    return 0;
}

int jz_cli_config_resolve(struct jz_cli *cli, jz_cli_getenv_fn env, struct jz_error *err)
{
    bool have_url = false, have_token = false, have_ca = false;
    const char *v;
    int rc;
    cli->url[0] = '\0';
    cli->token[0] = '\0';
    cli->ca[0] = '\0';
    if (cli->ca_flag) {
        if ((rc = set_ca(cli, cli->ca_flag, "--ca", err)))
            return rc;
        have_ca = true;
    } else if ((v = env("JAZARI_CA")) && *v) {
        if ((rc = set_ca(cli, v, "JAZARI_CA", err)))
            return rc;
        have_ca = true;
    }
    if (cli->url_flag) {
        if ((rc = set_url(cli, cli->url_flag, "--url", err)))
            return rc;
        have_url = true;
    } else if ((v = env("JAZARI_URL")) && *v) {
        if ((rc = set_url(cli, v, "JAZARI_URL", err)))
            return rc;
        have_url = true;
    }
    if (cli->token_flag) {
        if ((rc = set_token(cli, cli->token_flag, "--token", err)))
            return rc;
        have_token = true;
    } else if ((v = env("JAZARI_TOKEN")) && *v) {
        if ((rc = set_token(cli, v, "JAZARI_TOKEN", err)))
            return rc;
        have_token = true;
    } else if ((v = env("JAZARI_TOKEN_FILE")) && *v) {
        char *text;
        size_t len;
        rc = read_small(v, &text, &len, err);
        if (rc == JZ_ENOENT)
            return jz_error_set(err, JZ_EINVAL, "JAZARI_TOKEN_FILE: %.300s does not exist", v);
        if (rc)
            return rc;
        /* The token is the file's first line. */
        text[strcspn(text, "\r\n")] = '\0';
        rc = set_token(cli, trim(text), "JAZARI_TOKEN_FILE", err);
        free(text);
        if (rc)
            return rc;
        have_token = true;
    }
    /* The file is read for a CA only when it may be needed: an https:// URL not given, or given
     * without a CA (a missing file then just leaves the system's CA store). */
    bool want_ca = !have_ca && (!have_url || strncmp(cli->url, "https://", 8) == 0);
    if (!have_url || !have_token || want_ca) {
        bool only_ca = have_url && have_token;
        char path[4096];
        bool explicit_path = false;
        if ((v = env("JAZARI_CONFIG")) && *v) {
            if (!jz_strlcpy(path, v, sizeof path))
                return jz_error_set(err, JZ_EINVAL, "JAZARI_CONFIG: path too long");
            explicit_path = true;
        } else if ((v = env("HOME")) && *v) {
            int w = snprintf(path, sizeof path, "%s/.config/jazari/config", v);
            if (w < 0 || (size_t)w >= sizeof path)
                return jz_error_set(err, JZ_EINVAL, "HOME: path too long");
        } else {
            path[0] = '\0';
        }
        if (path[0]) {
            char *text;
            size_t len;
            rc = read_small(path, &text, &len, err);
            if (rc == JZ_ENOENT && explicit_path && !only_ca)
                return jz_error_set(err, JZ_EINVAL, "JAZARI_CONFIG: %.300s does not exist", path);
            if (rc && rc != JZ_ENOENT)
                return rc;
            if (rc == 0) {
                char furl[JZ_CLI_MAX_URL], ftok[JZ_CLI_MAX_TOKEN], fca[JZ_CLI_MAX_CA_PATH];
                bool fhu = false, fht = false, fhc = false;
                rc = parse_config(text, len, path, furl, &fhu, ftok, &fht, fca, &fhc, err);
                free(text);
                if (rc)
                    return rc;
                if (!have_ca && fhc) {
                    /* A relative path is the config file's neighbour. */
                    char full[JZ_CLI_MAX_CA_PATH];
                    const char *slash = strrchr(path, '/');
                    if (fca[0] != '/' && slash &&
                        snprintf(full, sizeof full, "%.*s/%s", (int)(slash - path), path, fca) <
                            (int)sizeof full)
                        jz_strlcpy(fca, full, sizeof fca);
                    char origin[4200];
                    snprintf(origin, sizeof origin, "%.4000s: ca", path);
                    if ((rc = set_ca(cli, fca, origin, err)))
                        return rc;
                    have_ca = true;
                }
                if (!have_url && fhu) {
                    memcpy(cli->url, furl, sizeof furl);
                    have_url = true;
                }
                if (!have_token && fht) {
                    memcpy(cli->token, ftok, sizeof ftok);
                    have_token = true;
                }
            }
        }
    }
    if (!have_url)
        jz_strlcpy(cli->url, JZ_CLI_DEFAULT_URL, sizeof cli->url);
    /* Paths are appended as "/v1/...": drop trailing slashes. */
    size_t n = strlen(cli->url);
    while (n > 0 && cli->url[n - 1] == '/')
        cli->url[--n] = '\0';
    return 0;
}
