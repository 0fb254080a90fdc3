/* tls.c - HTTPS and mutual TLS through libevent's OpenSSL bufferevents (see tls.h).
 *
 * Start-up builds one SSL_CTX: the protocol settings (configure), the certificate chain
 * and key with their checks (load_chain, load_key), and for mTLS the client CA file as
 * the only trust store (load_client_ca). Each accepted connection then gets an SSL from
 * that context inside an OpenSSL bufferevent in the accepting state; evhttp reads and
 * writes plaintext through it and never sees a record. A failed handshake (no client
 * certificate, an unknown CA, an old protocol, plain HTTP) ends in libevent's error
 * callback, which closes the connection: no HTTP request is ever made from it.
 *
 * OpenSSL calls on_info on the HTTP thread during handshakes; it counts completed ones
 * and the fatal alerts sent (why handshakes failed) for /metrics. The context's app data
 * points back at the tls_ctx, so there is no global state. */
#include "server/tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/status.h"
#include "core/util.h"

/* TLS 1.2: ECDHE key exchange (forward secrecy) with AEAD ciphers only, in Mozilla's
 * "intermediate" order. Every TLS 1.3 suite is AEAD with (EC)DHE: OpenSSL's defaults. */
static const char TLS12_CIPHERS[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

enum { WARN_DAYS = 30 }; /* a certificate expiring sooner is worth a warning */

struct tls_ctx {
    SSL_CTX *ctx;
    char warnings[TLS_WARNINGS_MAX];
    char describe[640];
    /* the HTTP thread's counters */
    uint64_t connections; /* TLS bufferevents made (connections accepted) */
    uint64_t handshakes;  /* handshakes completed */
    uint64_t resumed;     /* of which resumed a session (TLS 1.3 ticket) */
    uint64_t alerts[256]; /* fatal alerts sent, by alert description */
};

/* ---- helpers ---- */

/* OpenSSL's reason for the failure just seen: the first error it queued (the cause, not
 * its consequences). The queue is emptied. */
static const char *ssl_reason(void) {
    const unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown OpenSSL error";
}

static void warn(tls_ctx *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(tls_ctx *t, const char *fmt, ...) {
    const size_t used = strlen(t->warnings);
    if (used + 2 >= sizeof t->warnings) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->warnings + used, sizeof t->warnings - used - 1, fmt, ap);
    va_end(ap);
    strcat(t->warnings, "\n");
}

/* "2027-01-31 12:00 UTC" */
static void date_of(const ASN1_TIME *at, char *buf, size_t cap) {
    struct tm tm;
    if (!at || ASN1_TIME_to_tm(at, &tm) != 1 || !strftime(buf, cap, "%Y-%m-%d %H:%M UTC", &tm))
        snprintf(buf, cap, "(unreadable date)");
}

/* A name as an RFC 2253 string with UTF-8 kept as is (control characters and RFC 2253's
 * specials escaped); false when it needs more than cap bytes. */
static bool name_string(const X509_NAME *n, char *buf, size_t cap) {
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) return false;
    const int r = X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *p = NULL;
    const long len = BIO_get_mem_data(b, &p);
    const bool ok = r >= 0 && len >= 0 && (size_t)len < cap && (len == 0 || !memchr(p, 0, (size_t)len));
    if (ok) {
        if (len) memcpy(buf, p, (size_t)len);
        buf[len] = '\0';
    }
    BIO_free(b);
    return ok;
}

static void subject_of(const X509 *x, char *buf, size_t cap) {
    if (!name_string(X509_get_subject_name(x), buf, cap) || !buf[0]) snprintf(buf, cap, "(no subject)");
}

/* An unreadable file is named with the system's reason before OpenSSL sees it. */
static sov_status readable(const char *what, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return sov_fail(SOV_ERR_IO, "cannot read the %s %s: %s", what, path, strerror(errno));
    fclose(f);
    return SOV_OK;
}

/* ---- the context ---- */

/* Counts completed handshakes and the fatal alerts that ended the others. */
static void on_info(const SSL *ssl, int where, int ret) {
    tls_ctx *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!t) return;
    if (where & SSL_CB_HANDSHAKE_DONE) {
        t->handshakes++;
        t->resumed += SSL_session_reused(ssl) == 1;
    }
    if ((where & SSL_CB_WRITE_ALERT) == SSL_CB_WRITE_ALERT && (ret >> 8) == SSL3_AL_FATAL)
        t->alerts[ret & 0xff]++;
}

/* ALPN: HTTP/1.1 when the client offers it (so no client assumes h2 on this port);
 * without ALPN or without http/1.1 in the list, the handshake goes on without it. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg) {
    static const unsigned char http11[] = "\x08http/1.1";
    unsigned char *sel = NULL, sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, http11, sizeof http11 - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

/* TLS 1.3 resumes with a fresh ECDHE exchange (OpenSSL requires psk_dhe_ke), so its
 * tickets keep forward secrecy; a TLS 1.2 ticket resumes on the ticket key alone, which
 * lives as long as the process, so TLS 1.2 clients get none. Called on the ClientHello
 * after the version is chosen and before the ServerHello says whether a ticket follows. */
static int no_tls12_tickets(SSL *ssl, void *arg) {
    if (SSL_version(ssl) < TLS1_3_VERSION) SSL_set_options(ssl, SSL_OP_NO_TICKET);
    return 1;
}

/* Protocol settings: what may be negotiated at all. */
static sov_status configure(tls_ctx *t) {
    SSL_CTX *c = t->ctx;
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(c, TLS12_CIPHERS) != 1)
        return sov_fail(SOV_ERR_UNSUPPORTED, "tls: this OpenSSL refuses TLS 1.2+ with AEAD ciphers: %s",
                        ssl_reason());
    /* the server's order (AES-GCM first), except that a client preferring ChaCha20 (no AES
     * instructions) gets it; no compression (CRIME), no renegotiation of any kind */
    SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA |
                               SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* resumption: TLS 1.3 tickets only (no_tls12_tickets); no server-side cache, which
     * could not work anyway: OpenSSL drops a session from it when its connection ends
     * without close_notify, and libevent never sends one */
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_cert_cb(c, no_tls12_tickets, NULL);
    /* resumption with client certificates needs a context id (else OpenSSL refuses it) */
    static const unsigned char sid[] = "sov serve";
    SSL_CTX_set_session_id_context(c, sid, sizeof sid - 1);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS); /* idle keep-alive connections hold no buffers */
    SSL_CTX_set_app_data(c, t);
    SSL_CTX_set_info_callback(c, on_info);
    SSL_CTX_set_alpn_select_cb(c, on_alpn, NULL);
    return SOV_OK;
}

/* Refuses a certificate outside its validity period; warns when it ends soon. */
static sov_status check_dates(tls_ctx *t, const X509 *x, const char *what, const char *path) {
    char subject[300], date[64];
    subject_of(x, subject, sizeof subject);
    if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
        date_of(X509_get0_notBefore(x), date, sizeof date);
        return sov_fail(SOV_ERR_FORMAT,
                        "the %s '%s' in %s is not valid before %s: check the system clock, or use a "
                        "certificate valid now",
                        what, subject, path, date);
    }
    date_of(X509_get0_notAfter(x), date, sizeof date);
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
        return sov_fail(SOV_ERR_FORMAT,
                        "the %s '%s' in %s expired on %s: renew it (every client would refuse it)", what,
                        subject, path, date);
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1 && days < WARN_DAYS)
        warn(t, "the %s '%s' in %s expires in %d day(s), on %s: renew it", what, subject, path, days, date);
    return SOV_OK;
}

/* The certificate and its intermediates. */
static sov_status load_chain(tls_ctx *t, const char *path) {
    sov_status st = readable("TLS certificate", path);
    if (st) return st;
    if (SSL_CTX_use_certificate_chain_file(t->ctx, path) != 1)
        return sov_fail(SOV_ERR_FORMAT,
                        "the TLS certificate %s is not usable (%s): give a PEM file with the server's "
                        "certificate first, then its intermediates",
                        path, ssl_reason());
    const X509 *leaf = SSL_CTX_get0_certificate(t->ctx);
    if (!leaf) return sov_fail(SOV_ERR_FORMAT, "the TLS certificate %s holds no certificate", path);
    st = check_dates(t, leaf, "TLS certificate", path);
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(t->ctx, &chain);
    for (int i = 0; !st && chain && i < sk_X509_num(chain); i++)
        st = check_dates(t, sk_X509_value(chain, i), "intermediate certificate", path);
    if (st) return st;
    char subject[300], until[64];
    subject_of(leaf, subject, sizeof subject);
    date_of(X509_get0_notAfter(leaf), until, sizeof until);
    snprintf(t->describe, sizeof t->describe, "TLS 1.2/1.3, certificate '%s' until %s", subject, until);
    return SOV_OK;
}

/* Called only for an encrypted key: there is nobody to type a passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *asked) {
    *(bool *)asked = true;
    return -1;
}

static sov_status load_key(tls_ctx *t, const char *path, const char *cert) {
    sov_status st = readable("TLS key", path);
    if (st) return st;
    struct stat sb;
    if (stat(path, &sb) == 0 && (sb.st_mode & S_IROTH))
        warn(t, "the TLS key %s is readable by every user of this machine: chmod o-r %s", path, path);
    BIO *b = BIO_new_file(path, "r");
    if (!b) return sov_fail(SOV_ERR_IO, "cannot read the TLS key %s: %s", path, ssl_reason());
    bool asked = false;
    EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, &asked);
    BIO_free(b);
    if (!key) {
        ERR_clear_error();
        if (asked)
            return sov_fail(SOV_ERR_FORMAT,
                            "the TLS key %s is encrypted with a passphrase, which sov serve cannot ask for: "
                            "decrypt it into a file only the server's user can read (openssl pkey -in %s "
                            "-out key.pem)",
                            path, path);
        return sov_fail(SOV_ERR_FORMAT, "the TLS key %s holds no PEM private key", path);
    }
    const int used = SSL_CTX_use_PrivateKey(t->ctx, key);
    EVP_PKEY_free(key);
    if (used != 1 || SSL_CTX_check_private_key(t->ctx) != 1) {
        ERR_clear_error();
        return sov_fail(SOV_ERR_FORMAT,
                        "the TLS key %s does not match the certificate %s: give the key the certificate "
                        "was issued for",
                        path, cert);
    }
    return SOV_OK;
}

/* The client CA file is the whole trust store for client certificates: anything in it is
 * an anchor (an intermediate CA there limits clients to its branch), nothing else is. */
static sov_status load_client_ca(tls_ctx *t, const char *path) {
    sov_status st = readable("TLS client CA file", path);
    if (st) return st;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(path);
    if (!names || sk_X509_NAME_num(names) == 0) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        ERR_clear_error();
        return sov_fail(SOV_ERR_FORMAT,
                        "the TLS client CA file %s holds no PEM certificate: give the CA "
                        "certificate(s) that issue your clients' certificates",
                        path);
    }
    SSL_CTX_set_client_CA_list(t->ctx, names); /* named in the certificate request */
    if (SSL_CTX_load_verify_locations(t->ctx, path, NULL) != 1)
        return sov_fail(SOV_ERR_FORMAT, "the TLS client CA file %s is not usable: %s", path, ssl_reason());
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(t->ctx));
    int valid = 0;
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        const X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (!ca) continue;
        char subject[300], date[64];
        subject_of(ca, subject, sizeof subject);
        if (X509_cmp_current_time(X509_get0_notAfter(ca)) <= 0) {
            date_of(X509_get0_notAfter(ca), date, sizeof date);
            warn(t, "the client CA '%s' in %s expired on %s: no certificate it issued can be verified",
                 subject, path, date);
        } else {
            valid++;
        }
    }
    if (!valid)
        return sov_fail(SOV_ERR_FORMAT,
                        "no CA certificate in %s is valid now: no client certificate could be verified; "
                        "give a current CA",
                        path);
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(t->ctx), X509_V_FLAG_PARTIAL_CHAIN);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    const size_t used = strlen(t->describe);
    snprintf(t->describe + used, sizeof t->describe - used,
             "; clients need a certificate from a CA in %s (mTLS)", path);
    return SOV_OK;
}

sov_status tls_ctx_new(const tls_params *p, tls_ctx **out) {
    *out = NULL;
    if (!p || !p->cert || !p->key)
        return sov_fail(SOV_ERR_ARG,
                        "tls: a certificate and its key are both needed (--tls-cert, --tls-key)");
    tls_ctx *t = calloc(1, sizeof *t);
    if (!t) return sov_fail(SOV_ERR_NOMEM, "tls: out of memory");
    t->ctx = SSL_CTX_new(TLS_server_method());
    sov_status st =
        t->ctx ? configure(t) : sov_fail(SOV_ERR_NOMEM, "tls: cannot create a context: %s", ssl_reason());
    if (!st) st = load_chain(t, p->cert);
    if (!st) st = load_key(t, p->key, p->cert);
    if (!st && p->client_ca) st = load_client_ca(t, p->client_ca);
    if (st) {
        tls_ctx_free(t);
        return st;
    }
    *out = t;
    return SOV_OK;
}

void tls_ctx_free(tls_ctx *t) {
    if (!t) return;
    SSL_CTX_free(t->ctx);
    free(t);
}

const char *tls_warnings(const tls_ctx *t) { return t->warnings; }
const char *tls_describe(const tls_ctx *t) { return t->describe; }

/* ---- connections ---- */

struct bufferevent *tls_bev_new(struct event_base *base, void *arg) {
    tls_ctx *t = arg;
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl) {
        ERR_clear_error();
        return NULL;
    }
    /* frees ssl itself when it fails; evhttp sets the socket and enables reading */
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) return NULL;
    /* a client that closes its socket without TLS's close_notify has closed it all the
     * same (HTTP's own framing tells a complete request from a cut one) */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    t->connections++;
    return bev;
}

static SSL *ssl_of(struct evhttp_request *req) {
    struct evhttp_connection *evcon = req ? evhttp_request_get_connection(req) : NULL;
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? bufferevent_openssl_get_ssl(bev) : NULL;
}

bool tls_request_is_tls(struct evhttp_request *req) { return ssl_of(req) != NULL; }

bool tls_peer_subject(struct evhttp_request *req, char *buf, size_t cap) {
    const SSL *ssl = ssl_of(req);
    const X509 *peer = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    /* the handshake already refused an unverified certificate; checked again here so that
     * an identity is never taken from one */
    if (!peer || SSL_get_verify_result(ssl) != X509_V_OK) return false;
    return name_string(X509_get_subject_name(peer), buf, cap) && buf[0];
}

sov_status tls_cert_file_subject(const char *path, char *buf, size_t cap) {
    sov_status st = readable("certificate", path);
    if (st) return st;
    BIO *b = BIO_new_file(path, "r");
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x) {
        ERR_clear_error();
        return sov_fail(SOV_ERR_FORMAT, "%s holds no PEM certificate", path);
    }
    const bool ok = name_string(X509_get_subject_name(x), buf, cap);
    X509_free(x);
    if (!ok || !buf[0])
        return sov_fail(SOV_ERR_ARG, "the subject of %s is empty or longer than %zu bytes", path, cap - 1);
    return SOV_OK;
}

/* ---- metrics ---- */

/* OpenSSL 3.0 names TLS 1.3's new alerts "unknown". */
static const char *alert_name(int a) {
    switch (a) {
    case 109: return "missing extension";
    case 115: return "unknown psk identity";
    case 116: return "certificate required";
    case 120: return "no application protocol";
    default: return SSL_alert_desc_string_long(a);
    }
}

void tls_metrics_write(const tls_ctx *t, struct evbuffer *out) {
    evbuffer_add_printf(out,
                        "# HELP sov_tls_connections_total TLS connections accepted.\n"
                        "# TYPE sov_tls_connections_total counter\n"
                        "sov_tls_connections_total %llu\n"
                        "# HELP sov_tls_handshakes_total TLS handshakes completed.\n"
                        "# TYPE sov_tls_handshakes_total counter\n"
                        "sov_tls_handshakes_total %llu\n"
                        "# HELP sov_tls_resumed_handshakes_total TLS handshakes that resumed a session.\n"
                        "# TYPE sov_tls_resumed_handshakes_total counter\n"
                        "sov_tls_resumed_handshakes_total %llu\n"
                        "# HELP sov_tls_alerts_sent_total Fatal TLS alerts sent (refused handshakes: no or "
                        "an untrusted client certificate, an old protocol, ...), by alert.\n"
                        "# TYPE sov_tls_alerts_sent_total counter\n",
                        (unsigned long long)t->connections, (unsigned long long)t->handshakes,
                        (unsigned long long)t->resumed);
    for (int a = 0; a < 256; a++) {
        if (!t->alerts[a]) continue;
        char name[64];
        snprintf(name, sizeof name, "%s", alert_name(a));
        for (char *c = name; *c; c++) /* "unknown CA" -> "unknown_ca": label values stay simple */
            *c = *c == ' ' ? '_' : (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
        evbuffer_add_printf(out, "sov_tls_alerts_sent_total{alert=\"%s\"} %llu\n", name,
                            (unsigned long long)t->alerts[a]);
    }
}
