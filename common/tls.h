/* TLS set-up shared by jazarid (its API and agent listeners) and jazari-node: OpenSSL contexts
 * for TLS 1.2 or later, and client connections that verify the server's certificate against a
 * CA file and check that it names the host (a DNS name, or an IP address in an IP SAN).
 * Library code: nothing here logs; errors come back in a caller-owned struct jz_error with
 * OpenSSL's reason. The bufferevents that carry TLS are the daemons' business. */
#ifndef JZ_COMMON_TLS_H
#define JZ_COMMON_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include <jazari/error.h>

/* A server context from a PEM certificate chain (the server's certificate first) and its
 * private key (unencrypted PEM). Checks that the key matches the certificate. *out (freed by
 * the caller with SSL_CTX_free) is written only on success. */
int jz_tls_server_ctx(const char *cert_file, const char *key_file, SSL_CTX **out,
                      struct jz_error *err);

/* A client context that accepts only servers whose certificate chains to a CA in ca_file (PEM,
 * may hold several), or to the system's default store when ca_file is NULL. *out (freed by the
 * caller with SSL_CTX_free) is written only on success. */
int jz_tls_client_ctx(const char *ca_file, SSL_CTX **out, struct jz_error *err);

/* A new connection state for talking to host (borrowed): the certificate must name host (an IP
 * address literal is matched against IP SANs, a name against DNS SANs, and is sent as SNI).
 * Returns NULL with err set on failure; the caller owns the SSL (a bufferevent created with
 * BEV_OPT_CLOSE_ON_FREE takes it over). */
SSL *jz_tls_client_ssl(SSL_CTX *ctx, const char *host, struct jz_error *err);

/* Writes why a TLS operation failed into buf: the OpenSSL error code (as libevent's
 * bufferevent_get_openssl_error returns it; 0 takes the oldest error queued on this thread) and,
 * when ssl is not NULL and it refused the peer's certificate, the verification result
 * ("certificate verify failed (unable to get local issuer certificate)"). Empties the thread's
 * error queue. Writes "" when there is nothing to say. */
void jz_tls_error_text(const SSL *ssl, unsigned long queued, char *buf, size_t len);

/* True when host is an IPv4 or IPv6 address literal. */
bool jz_tls_host_is_ip(const char *host);

#endif
