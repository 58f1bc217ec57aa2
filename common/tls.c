/* OpenSSL contexts and client connection set-up (see tls.h). */
#include "common/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* The OpenSSL error code (0: the oldest queued) as its reason text; empties the queue. */
static void queued_error(unsigned long code, char *buf, size_t len)
{
    if (!code)
        code = ERR_get_error();
    buf[0] = '\0';
    if (code) {
        const char *reason = ERR_reason_error_string(code);
        if (reason)
            snprintf(buf, len, "%s", reason);
        else
            ERR_error_string_n(code, buf, len);
    }
    ERR_clear_error();
}

bool jz_tls_host_is_ip(const char *host)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* What both ends share: TLS 1.2 at least, no compression (CRIME) or renegotiation, buffers
 * released while a connection is idle (a server may hold thousands), and a peer closing without
 * close_notify reads as an end of stream rather than an error (OpenSSL 3 otherwise reports
 * "unexpected eof"). */
static int common_setup(SSL_CTX *ctx, struct jz_error *err)
{
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        return jz_error_set(err, JZ_EIO, "cannot require TLS 1.2");
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return 0;
}

int jz_tls_server_ctx(const char *cert_file, const char *key_file, SSL_CTX **out,
                      struct jz_error *err)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return jz_error_set(err, JZ_ENOMEM, "cannot create a TLS context");
    int rc = common_setup(ctx, err);
    if (rc)
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        queued_error(0, why, sizeof why);
        rc = jz_error_set(err, JZ_EINVAL, "--tls-cert %.300s: %s", cert_file, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        queued_error(0, why, sizeof why);
        rc = jz_error_set(err, JZ_EINVAL, "--tls-key %.300s: %s", key_file, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        queued_error(0, why, sizeof why);
        rc = jz_error_set(err, JZ_EINVAL, "--tls-key %.300s does not match --tls-cert %.300s: %s",
                          key_file, cert_file, why);
        goto fail;
    }
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return rc;
}

int jz_tls_client_ctx(const char *ca_file, SSL_CTX **out, struct jz_error *err)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return jz_error_set(err, JZ_ENOMEM, "cannot create a TLS context");
    int rc = common_setup(ctx, err);
    if (rc)
        goto fail;
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        queued_error(0, why, sizeof why);
        rc =
            jz_error_set(err, JZ_EINVAL, "CA file %.300s: %s", ca_file ? ca_file : "(system)", why);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return rc;
}

SSL *jz_tls_client_ssl(SSL_CTX *ctx, const char *host, struct jz_error *err)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        jz_error_set(err, JZ_ENOMEM, "cannot create a TLS connection");
        return NULL;
    }
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    /* No wildcard matching across labels, no partial wildcards ("a*.example"). */
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    bool ok;
    if (jz_tls_host_is_ip(host)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1; /* SNI carries names only */
    } else {
        ok = X509_VERIFY_PARAM_set1_host(vp, host, 0) == 1 &&
             SSL_set_tlsext_host_name(ssl, host) == 1;
    }
    if (!ok) {
        SSL_free(ssl);
        jz_error_set(err, JZ_EINVAL, "cannot check certificates for host '%.200s'", host);
        return NULL;
    }
    return ssl;
}

void jz_tls_error_text(const SSL *ssl, unsigned long code, char *buf, size_t len)
{
    queued_error(code, buf, len);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK) {
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, "%s(%s)", n ? " " : "", X509_verify_cert_error_string(vr));
    }
}
