/* tls.h - HTTPS and mutual TLS for `sov serve` (docs/TLS.md).
 *
 *   sov serve --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]
 *
 * One SSL_CTX, configured and checked once at start-up (tls_ctx_new): TLS 1.2 and 1.3
 * only, TLS 1.2 restricted to ECDHE key exchange with AEAD ciphers (AES-GCM,
 * ChaCha20-Poly1305), OpenSSL's TLS 1.3 suites, the server's cipher order, no
 * compression, no renegotiation, ALPN http/1.1. evhttp gets one OpenSSL bufferevent per
 * accepted connection (tls_bev_new, given to evhttp_set_bevcb), so the HTTP code above
 * is unchanged: it reads and writes plaintext through the bufferevent.
 *
 * With a client CA file the server asks every client for a certificate and refuses the
 * handshake without one that chains to a certificate in that file (and only that file:
 * the system's trust store is never consulted). The verified certificate's subject, as
 * an RFC 2253 string (tls_peer_subject), may stand for an API key (tenants.h).
 *
 * Everything here runs on the server's one HTTP thread, apart from tls_ctx_new/free
 * and tls_cert_file_subject; the counters are that thread's. */
#ifndef SOV_SERVER_TLS_H
#define SOV_SERVER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

struct bufferevent;
struct event_base;
struct evhttp_request;
struct evbuffer;

typedef struct tls_ctx tls_ctx;

typedef struct tls_params {
    const char *cert;      /* PEM: the server's certificate, then any intermediates */
    const char *key;       /* PEM: its private key, unencrypted */
    const char *client_ca; /* PEM: the CA certificate(s) client certificates must chain to
                              (mTLS); NULL: clients are not asked for one */
} tls_params;

enum { TLS_WARNINGS_MAX = 1024 };

/* Loads the certificate chain and key and checks them: readable, PEM, the key matching
 * the certificate, not encrypted (nothing could type its passphrase), every certificate
 * of the chain inside its validity period (an expired or not yet valid certificate is
 * refused: every client would reject it). Errors, each naming the file and what to do:
 * SOV_ERR_IO (unreadable file), SOV_ERR_FORMAT (not PEM, no certificate, mismatched or
 * encrypted key, expired or not yet valid certificate), SOV_ERR_NOMEM. Free with
 * tls_ctx_free once the server that used it is gone. */
sov_status tls_ctx_new(const tls_params *p, tls_ctx **out);
void tls_ctx_free(tls_ctx *t);

/* Lines worth a warning at start-up ("" when none): a certificate that expires within
 * 30 days, a key file other users may read, an expired CA in the client CA file. */
const char *tls_warnings(const tls_ctx *t);
/* One line for the start-up message: "TLS 1.2+, certificate CN=...(until 2027-01-01)..." */
const char *tls_describe(const tls_ctx *t);

/* evhttp_set_bevcb's callback (arg: the tls_ctx): a bufferevent that accepts a TLS
 * handshake on the connection evhttp is about to give it. NULL when out of memory (evhttp
 * then makes a plain one: tls_request_is_tls lets the server refuse it). */
struct bufferevent *tls_bev_new(struct event_base *base, void *arg);

/* True when req arrived over TLS. */
bool tls_request_is_tls(struct evhttp_request *req);

/* The subject of the client certificate the handshake of req's connection verified, as
 * an RFC 2253 string with UTF-8 left as is ("CN=radiology,O=Hospital"; what
 * `openssl x509 -noout -subject -nameopt RFC2253,-esc_msb` prints after "subject="),
 * into buf. False when there is none, it was not verified, or it needs more than cap. */
bool tls_peer_subject(struct evhttp_request *req, char *buf, size_t cap);

/* The subject, formatted as tls_peer_subject does, of the first certificate in a PEM file
 * (for `sov keys create --client-cert FILE`). SOV_ERR_IO, SOV_ERR_FORMAT, SOV_ERR_ARG
 * (longer than cap). */
sov_status tls_cert_file_subject(const char *path, char *buf, size_t cap);

/* Appends the TLS counters to a Prometheus exposition: sov_tls_connections_total,
 * sov_tls_handshakes_total, sov_tls_resumed_handshakes_total, sov_tls_alerts_sent_total{alert}. */
void tls_metrics_write(const tls_ctx *t, struct evbuffer *out);

#endif
