/* server.c - the HTTP side of the server (see server.h).
 *
 * Everything here runs on the one libevent thread. A completion request becomes an
 * `hreq`: it is parsed and checked (openai.c), its prompt rendered and tokenized, and a
 * sched_req submitted. The engine thread writes a byte to a pipe when requests have new
 * output; the pipe's event drains sched_poll and turns each delta into SSE chunks or,
 * at the end, one JSON body. Streams send their 200 header with the first token, so a
 * request that times out or fails in the queue still gets a proper error status.
 *
 * Client disconnects: libevent notices a closed socket only when it writes to it, so
 * while a request waits or computes we watch the socket ourselves (a read event that
 * peeks: EOF means the client left) and libevent's close callback covers failed writes.
 * Either way the request is cancelled in the scheduler, which frees its sequence and KV
 * blocks in its next step; the hreq lives until the scheduler reports the end.
 *
 * HTTPS (server/tls.h): evhttp reads and writes through an OpenSSL bufferevent, so only
 * the watcher sees raw TLS records. Bytes waiting on the socket may then be the client's
 * close_notify alert ahead of its FIN rather than a pipelined request, so when data waits
 * the watcher asks whether the peer also closed its side (POLLRDHUP), and if not polls for
 * that close (a FIN or a reset) until the reply.
 *

 * The audit log (with --db; docs/AUDIT.md): every /v1 request that gets a response gets
 * a record, and the LAST reply — a whole body, an error body, or a stream's last chunks
 * and [DONE] — is held in its hreq until the store worker reports the record committed
 * (the "---- audit ----" section). A request whose record cannot be written is answered
 * 503 instead (a stream ends with an error event instead of [DONE]). */
#include "server/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "core/util.h"
#include "grammar/grammar.h"
#include "redact/redact.h"
#include "sched/sched.h"
#include "server/admin.h"
#include "server/embeddings.h"
#include "server/metrics.h"
#include "server/openai.h"
#include "server/tls.h"
#include "server/server_audit.h"
#include "server/web.h"
#include "tenants/tenants.h"
#include "tok/tok.h"

typedef struct server server;

typedef struct hreq {
    server *srv;
    struct evhttp_request *req;    /* NULL once the HTTP side is over */
    struct evhttp_request *orphan; /* a request libevent detached from its closed connection: ours to free */
    struct evhttp_connection *evcon;
    struct event *peek; /* watches the idle socket for a disconnect */
    sched_req *sr;
    const char *route;
    oai_reply rp;
    char id[48];
    char model[128];
    bool stream;
    bool replying;     /* streaming: the 200 header went out */
    bool gone;         /* the client left */
    tenants_key key;   /* who asked (a copy: the key table may be reloaded) */
    tenants_resv resv; /* its quota reservation, when the key has limits */
    bool reserving;    /* waiting for the store worker's answer */
    bool granted;      /* resv holds tokens to settle at the end */
    bool submitted;    /* handed to the engine */
    bool settled;
    int32_t n_prompt;
    size_t text_offset; /* completion logprobs: bytes of text sent so far */
    /* non-streaming: everything so far */
    char *text;
    size_t len, cap;
    sched_tok *toks;
    int32_t n_toks, cap_toks;
    struct hreq *prev, *next; /* the server's list of live hreqs */
    srv_audit au;             /* its audit record while it is built */
    bool auditing;            /* the last reply is held until the record is committed */
    bool audited;             /* the record is committed: the last reply may go */
    bool ended;               /* the engine is done with it (or never had it) */
    reply_stream rs;          /* streaming with rp.parse: the reply taken apart so far */
    struct evbuffer *held;    /* the held last reply (a body, or a stream's last chunks) */
    bool held_stream;
    int held_status;
    const char *held_reason;
    /* /v1/embeddings: one engine request per input (sr stays NULL) */
    bool embed;
    sched_req **parts;      /* [n_parts] in input order */
    int32_t n_parts, n_ended;
    float *vecs;            /* (n_parts, n_embd) the embeddings as they arrive */
    bool base64;            /* encoding_format "base64" */
    int64_t embd_tokens;    /* tokens of the inputs that went through the model */
    sched_finish embd_fail; /* the first input that did not end well (SCHED_RUNNING: none) */
    char embd_error[160];
} hreq;

/* A completion's last reply while its bytes may still sit in libevent's output buffer: a
 * shutdown waits for these so that no client loses the end of its answer. Freed when the
 * reply has been written (the request's on-complete callback) or the connection closes. */
typedef struct flusher {
    server *srv;
    struct evhttp_connection *evcon;
    struct flusher *prev, *next;
} flusher;

struct server {
    server_params p;
    const sov_model *model;
    const sov_vocab *vocab;
    sov_model_info info;
    reply_style reply_style; /* how the chat template's model writes reasoning and calls */
    sched *sched;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    int pipe_fd[2]; /* engine -> HTTP thread wake-ups */
    struct event *wake_ev, *sigterm_ev, *sigint_ev, *tick_ev;
    hreq *live;
    flusher *flushing;
    bool shutting_down;
    double shutdown_deadline;
    bool cancelled_all;
    uint64_t id_counter;
    http_counts counts;
    tenant_counts tcounts;
    tenants *tenants; /* NULL: no state store, everyone is the default tenant */
    bool auth_was_required;
    struct evbuffer *scratch;
    sov_policy policy;      /* the data-handling policy (a copy of p.data_policy) */
    redact_counts redacted; /* findings replaced in prompts (redact_prompts) */
    bool audit;                       /* the audit log is on (a store, and an audit key) */
    srv_audit_cfg au_cfg;             /* what every record shares */
    hreq *au_hold;                    /* the hreq whose next reply is its last (see last_reply) */
    srv_audit *au_req;                /* the /v1 request on_request is handling: its record */
    struct evhttp_request *au_req_req;
    sandbox_status sandbox; /* what the lockdown put in force (all zero: none) */
    const char *isa;        /* the kernel set the context runs, for the console */
    int32_t threads;        /* the context's worker threads, for the console */
    double started;         /* sov_now_s() at start, for the console's uptime */
    energy_meter meter;     /* joules per engine step (the engine thread reads it; its
                               source is fixed at start) */
    admin *admin;           /* the admin API under /console/api/ (server/admin.h) */
};

static bool audit_hold(server *s, struct evhttp_request *req, const char *route, int status,
                       const char *reason, struct evbuffer *body);
static void audit_abandon(hreq *h);
static void audit_queue(hreq *h, int status);

/* ---- replies ---- */

static void add_header(struct evhttp_request *req, const char *k, const char *v) {
    evhttp_add_header(evhttp_request_get_output_headers(req), k, v);
}

/* A HEAD request gets the headers of the GET answer: the body's length as
 * Content-Length and no body (evhttp would send one). */
static void head_no_body(struct evhttp_request *req, struct evbuffer *b) {
    if (!b || evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) return;
    char n[24];
    snprintf(n, sizeof n, "%zu", evbuffer_get_length(b));
    add_header(req, "Content-Length", n);
    evbuffer_drain(b, evbuffer_get_length(b));
}

static void send_body(server *s, struct evhttp_request *req, const char *route, int status, const char *ctype,
                      const char *body, size_t len) {
    add_header(req, "Content-Type", ctype);
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add(b, body, len);
    head_no_body(req, b);
    const char *reason = status == 200   ? "OK"
                         : status == 400 ? "Bad Request"
                         : status == 401 ? "Unauthorized"
                         : status == 403 ? "Forbidden"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 413 ? "Payload Too Large"
                         : status == 429 ? "Too Many Requests"
                         : status == 503 ? "Service Unavailable"
                                         : "Error";
    if (audit_hold(s, req, route, status, reason, b)) { /* it goes once its record is committed */
        if (b) evbuffer_free(b);
        return;
    }
    evhttp_send_reply(req, status, reason, b);
    if (b) evbuffer_free(b);
    http_count(&s->counts, route, status);
}

static void send_json(server *s, struct evhttp_request *req, const char *route, int status,
                      const char *json) {
    send_body(s, req, route, status, "application/json", json, strlen(json));
}

static void send_error(server *s, struct evhttp_request *req, const char *route, const oai_error *e) {
    char *j = oai_error_json(e);
    send_json(s, req, route, e->status, j);
    free(j);
}

static void send_error_msg(server *s, struct evhttp_request *req, const char *route, int status,
                           const char *type, const char *code, const char *msg) {
    oai_error e;
    oai_fail(&e, status, type, NULL, code, "%s", msg);
    send_error(s, req, route, &e);
}

/* ---- hreq lifetime ---- */

static void stop_watching(hreq *h) {
    if (h->peek) {
        event_free(h->peek);
        h->peek = NULL;
    }
    if (h->req && h->evcon) evhttp_connection_set_closecb(h->evcon, NULL, NULL);
}

static void hreq_free(hreq *h) {
    server *s = h->srv;
    audit_abandon(h);
    stop_watching(h);
    if (h->orphan) evhttp_request_free(h->orphan);
    if (h->sr) sched_req_release(h->sr);
    for (int32_t i = 0; h->parts && i < h->n_parts; i++) sched_req_release(h->parts[i]);
    free(h->parts);
    free(h->vecs);
    if (h->prev)
        h->prev->next = h->next;
    else
        s->live = h->next;
    if (h->next) h->next->prev = h->prev;
    free(h->text);
    free(h->toks);
    reply_stream_free(&h->rs);
    free(h);
}

/* The client left: cancel the work; the hreq goes when the scheduler says it ended. */
static void client_gone(hreq *h) {
    if (h->gone) return;
    h->gone = true;
    if (h->sr && h->submitted) sched_cancel(h->srv->sched, h->sr);
    for (int32_t i = 0; h->submitted && i < h->n_parts; i++) sched_cancel(h->srv->sched, h->parts[i]);
}

/* True when the peer shut its side of the socket (or it failed), data waiting or not. */
static bool peer_closed(evutil_socket_t fd) {
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void on_peek(evutil_socket_t fd, short what, void *arg) {
    hreq *h = arg;
    char c;
    ssize_t n;
    if (what & EV_TIMEOUT) { /* bytes wait unread (below): has the peer closed since? */
        if (!peer_closed(fd)) return;
        n = 0;
    } else {
        n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    }
    if (n > 0 && !peer_closed(fd)) {
        /* the client sent more (pipelining, or TLS's close_notify ahead of its FIN):
         * libevent reads it after the reply. A read event would fire for as long as the
         * bytes wait, so poll for the close instead, five times a second. */
        event_free(h->peek);
        h->peek = event_new(h->srv->base, fd, EV_PERSIST, on_peek, h);
        const struct timeval tv = {0, 200 * 1000};
        if (h->peek) event_add(h->peek, &tv);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    /* EOF or a socket error: close the connection (which frees the request) and cancel */
    struct evhttp_connection *evcon = h->evcon;
    stop_watching(h);
    h->req = NULL;
    client_gone(h);
    evhttp_connection_free(evcon);
}

static void on_close(struct evhttp_connection *evcon, void *arg) {
    hreq *h = arg;
    if (h->peek) {
        event_free(h->peek);
        h->peek = NULL;
    }
    /* a failed write or a timeout detached the request from the connection: then it is
     * ours to free; otherwise libevent frees it with the connection */
    if (h->req && !evhttp_request_get_connection(h->req)) h->orphan = h->req;
    h->req = NULL;
    client_gone(h);
}

static void flusher_free(flusher *f) {
    if (f->prev)
        f->prev->next = f->next;
    else
        f->srv->flushing = f->next;
    if (f->next) f->next->prev = f->prev;
    free(f);
}

static void on_flushed(struct evhttp_request *req, void *arg) {
    flusher *f = arg;
    (void)req;
    evhttp_connection_set_closecb(f->evcon, NULL, NULL); /* the connection may serve another request */
    flusher_free(f);
}

static void on_flusher_close(struct evhttp_connection *evcon, void *arg) {
    (void)evcon;
    flusher_free(arg);
}

/* The next reply sent on h->req is its last: stop watching for a disconnect and track the
 * reply until its bytes are written. Call before sending; http_done() after. With the
 * audit log, the first call only marks h: the reply sent next is held (audit_hold), and
 * this runs for real when it is released. */
static void last_reply(hreq *h) {
    if (h->srv->audit && !h->audited && h->req) {
        h->srv->au_hold = h;
        return;
    }
    stop_watching(h);
    struct evhttp_connection *evcon = h->evcon;
    h->evcon = NULL; /* the connection's close callback belongs to the flusher now */
    flusher *f = h->req && evcon ? calloc(1, sizeof *f) : NULL;
    if (!f) return;
    f->srv = h->srv;
    f->evcon = evcon;
    f->next = h->srv->flushing;
    if (f->next) f->next->prev = f;
    h->srv->flushing = f;
    evhttp_connection_set_closecb(evcon, on_flusher_close, f);
    evhttp_request_set_on_complete_cb(h->req, on_flushed, f);
}

/* The HTTP side is over (the last reply was sent). */
static void http_done(hreq *h) {
    if (h->auditing) return; /* held: the HTTP side goes on until it is released */
    stop_watching(h);
    h->req = NULL;
}

/* ---- streaming ---- */

static void sse(hreq *h, const char *json) {
    struct evbuffer *b = h->srv->scratch;
    if (h->held_stream) b = h->held; /* the stream's last chunks wait for the audit record */
    evbuffer_add_printf(b, "data: %s\n\n", json);
    if (h->held_stream) return;
    evhttp_send_reply_chunk(h->req, b);
    evbuffer_drain(b, evbuffer_get_length(b));
}

static void start_stream(hreq *h) {
    add_header(h->req, "Content-Type", "text/event-stream");
    add_header(h->req, "Cache-Control", "no-cache");
    add_header(h->req, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(h->req, 200, "OK");
    http_count(&h->srv->counts, h->route, 200);
    h->replying = true;
    if (h->rp.kind == OAI_CHAT) {
        char *j = oai_chunk_json(&h->rp, true, "", 0, NULL, 0, NULL, 0);
        if (j) sse(h, j);
        free(j);
    }
}

/* An error before any output: a proper status instead of a 200 stream. */
static bool early_error(hreq *h, const sched_delta *d) {
    if (d->started || d->finish == SCHED_RUNNING || d->finish == SCHED_FINISH_STOP ||
        d->finish == SCHED_FINISH_LENGTH)
        return false;
    last_reply(h);
    if (d->finish == SCHED_FINISH_DEADLINE)
        send_error_msg(h->srv, h->req, h->route, 503, "server_error", "timeout",
                       "The request timed out before it could start: the server is busy. Try again later.");
    else if (d->finish == SCHED_FINISH_CANCELLED)
        send_error_msg(h->srv, h->req, h->route, 503, "server_error", "shutting_down",
                       "The server is shutting down.");
    else
        send_error_msg(h->srv, h->req, h->route, 500, "server_error", NULL,
                       d->error[0] ? d->error : "engine error");
    return true;
}

static void stream_delta(hreq *h, const sched_delta *d) {
    if (!h->replying) {
        if (d->finish != SCHED_RUNNING && early_error(h, d)) {
            http_done(h);
            return;
        }
        start_stream(h);
    }
    const char *finish = oai_finish_reason(d->finish);
    if (h->rp.parse) { /* content, reasoning and calls as they become certain */
        reply_delta rd;
        if (reply_stream_feed(&h->rs, d->text, d->len, finish != NULL, &rd) == SOV_OK) {
            char *j = oai_reply_chunk_json(&h->rp, &rd, d->toks, d->n_toks);
            if (j) sse(h, j);
            free(j);
        }
        finish = oai_reply_finish(finish, h->rs.calls_sent);
    } else if (d->len > 0 || d->n_toks > 0) {
        char *j = oai_chunk_json(&h->rp, false, d->text, d->len, d->toks, d->n_toks, NULL, h->text_offset);
        if (j) sse(h, j);
        free(j);
        h->text_offset += d->len;
    }
    if (!finish) return;
    if (h->srv->audit && (h->held = evbuffer_new())) h->held_stream = true; /* from here on, held */
    if (d->finish == SCHED_FINISH_ERROR) {
        oai_error e;
        oai_fail(&e, 500, "server_error", NULL, NULL, "%s", d->error[0] ? d->error : "engine error");
        char *j = oai_error_json(&e);
        sse(h, j);
        free(j);
    } else {
        char *j = oai_chunk_json(&h->rp, false, "", 0, NULL, 0, finish, h->text_offset);
        if (j) sse(h, j);
        free(j);
        if (h->rp.include_usage) {
            const oai_usage u = {d->n_prompt, d->n_gen, d->n_cached, d->energy_j, energy_source_name(h->srv->meter.source)};
            j = oai_usage_chunk_json(&h->rp, &u);
            if (j) sse(h, j);
            free(j);
        }
    }
    struct evbuffer *b = h->srv->scratch;
    evbuffer_add_printf(b, "data: [DONE]\n\n");
    if (h->held_stream) {
        evbuffer_add_buffer(h->held, b);
        audit_queue(h, 200);
        return;
    }
    evhttp_send_reply_chunk(h->req, b);
    evbuffer_drain(b, evbuffer_get_length(b));
    last_reply(h);
    evhttp_send_reply_end(h->req);
    http_done(h);
}

/* ---- whole responses ---- */

static bool keep(hreq *h, const sched_delta *d) {
    if (d->len) {
        if (h->len + d->len > h->cap) {
            size_t cap = h->cap ? h->cap : 1024;
            while (cap < h->len + d->len)
                cap *= 2;
            char *p = realloc(h->text, cap);
            if (!p) return false;
            h->text = p;
            h->cap = cap;
        }
        memcpy(h->text + h->len, d->text, d->len);
        h->len += d->len;
    }
    if (d->n_toks) {
        if (h->n_toks + d->n_toks > h->cap_toks) {
            int32_t cap = h->cap_toks ? h->cap_toks : 64;
            while (cap < h->n_toks + d->n_toks)
                cap *= 2;
            sched_tok *p = realloc(h->toks, (size_t)cap * sizeof *p);
            if (!p) return false;
            h->toks = p;
            h->cap_toks = cap;
        }
        memcpy(h->toks + h->n_toks, d->toks, (size_t)d->n_toks * sizeof *d->toks);
        h->n_toks += d->n_toks;
    }
    return true;
}

static void whole_delta(hreq *h, const sched_delta *d) {
    if (!keep(h, d)) {
        last_reply(h);
        send_error_msg(h->srv, h->req, h->route, 500, "server_error", NULL, "out of memory");
        http_done(h);
        sched_cancel(h->srv->sched, h->sr);
        return;
    }
    if (d->finish == SCHED_RUNNING) return;
    if (early_error(h, d)) {
        http_done(h);
        return;
    }
    last_reply(h);
    if (d->finish == SCHED_FINISH_ERROR) {
        send_error_msg(h->srv, h->req, h->route, 500, "server_error", NULL,
                       d->error[0] ? d->error : "engine error");
    } else {
        const oai_usage u = {d->n_prompt, d->n_gen, d->n_cached, d->energy_j, energy_source_name(h->srv->meter.source)};
        char *j =
            oai_final_json(&h->rp, h->text, h->len, h->toks, h->n_toks, oai_finish_reason(d->finish), &u);
        if (j)
            send_json(h->srv, h->req, h->route, 200, j);
        else
            send_error_msg(h->srv, h->req, h->route, 500, "server_error", NULL, "out of memory");
        free(j);
    }
    http_done(h);
}

/* ---- engine output ---- */

static void settle(server *s, hreq *h, bool submitted, const sched_delta *d);
static void audit_output(hreq *h, const sched_delta *d);
static void embed_delta(server *s, hreq *h, sched_req *r, sched_delta *d);

static void deliver(server *s) {
    sched_req *ready[64];
    int32_t n;
    while ((n = sched_poll(s->sched, ready, 64)) > 0) {
        for (int32_t i = 0; i < n; i++) {
            hreq *h = sched_req_user(ready[i]);
            sched_delta d;
            sched_take(s->sched, ready[i], &d);
            if (h->embed) {
                embed_delta(s, h, ready[i], &d);
                continue;
            }
            audit_output(h, &d);
            if (h->req && !h->auditing) {
                if (h->stream)
                    stream_delta(h, &d);
                else
                    whole_delta(h, &d);
            }
            free(d.text);
            free(d.toks);
            if (d.finish != SCHED_RUNNING) {
                if (h->req && !h->auditing) { /* cannot happen: the last delta ends the reply */
                    stop_watching(h);
                    h->req = NULL;
                }
                settle(s, h, true, &d);
                h->ended = true;
                if (!h->auditing) hreq_free(h);
            }
        }
    }
}

static void take_reservations(server *s);
static void take_audits(server *s);

/* The key table may have been reloaded: say so when authentication turned on or off. */
static void poll_keys(server *s) {
    if (!s->tenants || !tenants_poll(s->tenants)) return;
    const bool on = tenants_auth_required(s->tenants);
    if (on != s->auth_was_required)
        fprintf(stderr, "sov serve: %s\n",
                on ? "API keys were created: every /v1 request now needs one"
                   : "the state store holds no API keys any more: serving without authentication");
    s->auth_was_required = on;
}

static void on_wake(evutil_socket_t fd, short what, void *arg) {
    server *s = arg;
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    poll_keys(s);
    take_reservations(s);
    take_audits(s);
    admin_take(s->admin);
    deliver(s);
}

/* Engine thread: a byte in the pipe wakes the HTTP thread (a full pipe already will). */
static void notify(void *arg) {
    server *s = arg;
    const char c = 1;
    ssize_t r = write(s->pipe_fd[1], &c, 1);
    (void)r;
}

/* ---- completions ---- */

static sov_token *tokenize(const sov_vocab *v, const char *text, int32_t *n_out) {
    const size_t len = strlen(text);
    if (len > (size_t)INT32_MAX / 8) return NULL;
    int32_t cap = (int32_t)len + 8;
    sov_token *t = malloc((size_t)cap * sizeof *t);
    if (!t) return NULL;
    int32_t n = sov_tokenize(v, text, len, true, true, t, cap);
    if (n > cap) {
        sov_token *p = realloc(t, (size_t)n * sizeof *t);
        if (!p) {
            free(t);
            return NULL;
        }
        t = p;
        n = sov_tokenize(v, text, len, true, true, t, n);
    }
    if (n < 0) {
        free(t);
        return NULL;
    }
    *n_out = n;
    return t;
}

/* Whether the prompt ends inside an opened <think> (a generation prompt that starts the
 * model's reasoning): its last few tokens as text, control tokens included. */
static bool prompt_opens_think(server *s, const sov_token *toks, int32_t n) {
    const int32_t k = SOV_MIN(n, 32); /* "<think>\n" may be one token or eight */
    char text[4096];
    const int32_t len = sov_detokenize(s->vocab, toks + n - k, k, true, false, text, sizeof text);
    return len > 0 && len < (int32_t)sizeof text && reply_prompt_opens_think(text, (size_t)len);
}

/* tool_choice "required" or a named tool: a grammar of one call in the model's own syntax
 * (reply_call_form) with arguments valid under the tool's parameters schema. A prompt that
 * opened <think> closes it first (a forced call skips the reasoning). False with e set. */
static bool forced_call_grammar(const oai_request *r, const reply_params *how, gram **out, oai_error *e) {
    json_t *tools = json_loads(r->tools_json, 0, NULL);
    const size_t n = json_array_size(tools);
    gram_call_form *forms = calloc(n ? n : 1, sizeof *forms);
    char **texts = calloc(2 * (n ? n : 1), sizeof *texts);
    size_t nf = 0;
    bool ok = tools && forms && texts;
    if (!ok) oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        const json_t *fn = json_object_get(json_array_get(tools, i), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (r->tool_choice == OAI_TOOLS_NAMED && strcmp(name, r->tool_choice_name) != 0) continue;
        char *pre, *post;
        if (!reply_call_form(how->format, name, &pre, &post)) {
            ok = oai_fail(e, 400, "invalid_request_error", "tool_choice", "unsupported_value",
                          "'tool_choice' cannot force a call in this model's tool-call format (%s); use \"auto\".",
                          reply_format_name(how->format));
            break;
        }
        if (how->starts_thinking) { /* close the reasoning the prompt opened */
            char *p2 = malloc(strlen(pre) + 12);
            if (p2) sprintf(p2, "</think>\n\n%s", pre);
            free(pre);
            pre = p2;
        }
        texts[2 * nf] = pre;
        texts[2 * nf + 1] = post;
        if (!pre) {
            ok = oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
            break;
        }
        forms[nf++] = (gram_call_form){.prefix = pre, .schema = json_object_get(fn, "parameters"), .suffix = post,
                                       .tool_index = i};
    }
    if (ok) {
        const gram_opts o = gram_default_opts();
        char why[256];
        const sov_status st = gram_from_call_forms(forms, nf, &o, out, why, sizeof why);
        if (st == SOV_ERR_NOMEM) ok = oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        else if (st)
            ok = oai_fail(e, 400, "invalid_request_error", "tools", "unsupported_schema",
                          "Invalid 'tools': a forced call's parameters schema: %s", why);
    }
    for (size_t i = 0; texts && i < 2 * nf; i++) free(texts[i]);
    free(texts);
    free(forms);
    json_decref(tools);
    return ok;
}

/* Under redact_prompts: the strings of a message that a model sees (tool call arguments,
 * reasoning) redacted like its content; names, ids and roles stay. */
static bool redact_json_strings(server *s, json_t *v, const char *key) {
    if (json_is_string(v)) {
        if (key && (!strcmp(key, "role") || !strcmp(key, "id") || !strcmp(key, "tool_call_id") ||
                    !strcmp(key, "type") || !strcmp(key, "name")))
            return true;
        size_t n;
        char *clean = redact_dup(s->policy.redact, json_string_value(v), json_string_length(v), &n, &s->redacted);
        const bool ok = clean && json_string_setn(v, clean, n) == 0;
        free(clean);
        return ok;
    }
    const char *k;
    json_t *x;
    size_t i;
    bool ok = true;
    if (json_is_object(v)) json_object_foreach(v, k, x) ok = ok && redact_json_strings(s, x, k);
    if (json_is_array(v)) json_array_foreach(v, i, x) ok = ok && redact_json_strings(s, x, key);
    return ok;
}

/* A chat through the model's Jinja template: the messages as a template sees them (with
 * each content as the request now holds it: redacted under redact_prompts), the tools
 * unless tool_choice is "none", and the request's template variables. */
static sov_status render_template(server *s, const oai_request *r, char **out) {
    json_t *msgs = json_loads(r->messages_json ? r->messages_json : "[]", 0, NULL);
    bool ok = json_is_array(msgs) && json_array_size(msgs) == r->n_msgs;
    for (size_t i = 0; ok && i < r->n_msgs; i++) {
        json_t *m = json_array_get(msgs, i);
        if (json_is_string(json_object_get(m, "content")))
            ok = json_object_set_new(m, "content", json_string(r->msgs[i].content)) == 0;
        if (ok && s->policy.redact_prompts) {
            json_t *calls = json_object_get(m, "tool_calls"), *reasoning = json_object_get(m, "reasoning_content");
            ok = (!calls || redact_json_strings(s, calls, NULL)) && (!reasoning || redact_json_strings(s, reasoning, NULL));
        }
    }
    char *mj = ok ? json_dumps(msgs, JSON_COMPACT) : NULL;
    json_decref(msgs);
    if (!mj) return sov_fail(SOV_ERR_NOMEM, "out of memory");
    const char *tools = r->tool_choice == OAI_TOOLS_NONE ? NULL : r->tools_json;
    const sov_status st =
        sov_chat_template_apply_json(s->p.chat_template, s->vocab, mj, tools, r->template_vars_json, true, out);
    free(mj);
    return st;
}

/* The prompt's tokens: chat messages through the model's template (ChatML when the model
 * has none sov knows), completion text as is. */
static void audit_prompt(server *s, const char *text, size_t len);
static void audit_prompt_tokens(server *s, const sov_token *toks, int32_t n);

static sov_token *prompt_tokens(server *s, const oai_request *r, int32_t *n, oai_error *e) {
    if (r->kind == OAI_COMPLETION && r->prompt_toks) {
        audit_prompt_tokens(s, r->prompt_toks, r->n_prompt_toks);
        sov_token *t = malloc(((size_t)r->n_prompt_toks + 1) * sizeof *t);
        if (t) memcpy(t, r->prompt_toks, (size_t)r->n_prompt_toks * sizeof *t);
        *n = r->n_prompt_toks;
        if (!t) oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        return t;
    }
    char *text = r->prompt;
    const bool tools = (r->tools_json && r->tool_choice != OAI_TOOLS_NONE) || r->has_tool_turns;
    if (r->kind == OAI_CHAT && s->p.chat_template) { /* the model's own Jinja template */
        if (render_template(s, r, &text)) {
            oai_fail(e, 400, "invalid_request_error", "messages", NULL, "Cannot render the chat template: %s",
                     sov_last_error());
            return NULL;
        }
    } else if (r->kind == OAI_CHAT && tools) {
        oai_fail(e, 400, "invalid_request_error", r->tools_json ? "tools" : "messages", "unsupported_parameter",
                 "This model's chat template cannot render tools or tool results: it has no Jinja template "
                 "(start the server with --chat-template-file FILE).");
        return NULL;
    } else if (r->kind == OAI_CHAT) {
        const char *tmpl = sov_chat_template_detect(s->vocab) ? NULL : "chatml";
        const int32_t need = sov_chat_apply(s->vocab, tmpl, r->msgs, r->n_msgs, true, NULL, 0);
        if (need < 0) {
            oai_fail(e, 400, "invalid_request_error", "messages", NULL, "Cannot render the chat template: %s",
                     sov_last_error());
            return NULL;
        }
        text = malloc((size_t)need + 1);
        if (!text || sov_chat_apply(s->vocab, tmpl, r->msgs, r->n_msgs, true, text, need + 1) != need) {
            free(text);
            oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
            return NULL;
        }
    }
    sov_token *t = tokenize(s->vocab, text, n);
    audit_prompt(s, text, strlen(text)); /* the exact text the model sees */
    if (text != r->prompt) free(text);
    if (!t)
        oai_fail(e, 400, "invalid_request_error", r->kind == OAI_CHAT ? "messages" : "prompt", NULL,
                 "Cannot tokenize the prompt: %s", sov_last_error());
    return t;
}

static bool model_matches(const server *s, const char *name) {
    if (!name || !name[0]) return true;
    if (strcmp(name, s->p.model_id) == 0) return true;
    /* the file name with its extension names the same model */
    const size_t n = strlen(s->p.model_id);
    return strncmp(name, s->p.model_id, n) == 0 && strcmp(name + n, ".gguf") == 0;
}

static uint64_t next_seed(server *s) {
    uint64_t z = sov_now_ns() ^ (++s->id_counter * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    return z ^ (z >> 31);
}

/* Starts watching the connection for a disconnect while the request computes. */
static void watch(hreq *h) {
    h->evcon = evhttp_request_get_connection(h->req);
    if (!h->evcon) return;
    evhttp_connection_set_closecb(h->evcon, on_close, h);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(h->evcon);
    const evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0) {
        /* a stream is many small writes: without TCP_NODELAY, Nagle's algorithm holds each
         * token until the client acknowledges the last one (a 4 ms floor per token seen
         * on loopback with one stream) */
        const int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        h->peek = event_new(h->srv->base, fd, EV_READ | EV_PERSIST, on_peek, h);
        if (h->peek) event_add(h->peek, NULL);
    }
}

/* ---- audit: a record for every /v1 response, committed before its last byte ---- */

/* THE place where the text the audit keeps of a prompt or a completion is produced: its
 * SHA-256 (and, with retention "full", the text itself) is of what this returns: the text
 * as the client exchanged it (UTF-8 as JSON carries it: invalid bytes and NUL become
 * U+FFFD) with the data policy's kinds of personal data replaced by placeholders (so the
 * store never holds them, not even as a hash of a short text). The redactor needs whole
 * text, so with one au_cfg.whole_completion is set (server_run): the completion is kept
 * whole and passed here once, at the end. Returns malloc'd text (NULL when out of memory). */
static char *audit_text(server *s, const char *text, size_t len, size_t *out_len) {
    size_t n = 0;
    char *clean = oai_utf8_clean(text, len, &n);
    if (!clean || !s->policy.redact) {
        *out_len = n;
        return clean;
    }
    /* the data policy's personal data never reaches the audit store (text or hash) */
    char *red = redact_dup(s->policy.redact, clean, n, out_len, NULL);
    free(clean);
    return red;
}

static void audit_prompt(server *s, const char *text, size_t len) {
    if (!s->au_req) return;
    size_t n = 0;
    char *t = audit_text(s, text, len, &n);
    if (t) srv_audit_prompt(s->au_req, t, n);
    free(t);
}

/* A prompt given as token ids: the text of those tokens (control tokens spelled out). */
static void audit_prompt_tokens(server *s, const sov_token *toks, int32_t n) {
    if (!s->au_req) return;
    const int32_t need = sov_detokenize(s->vocab, toks, n, true, false, NULL, 0);
    char *text = need >= 0 ? malloc((size_t)need + 1) : NULL;
    if (text && sov_detokenize(s->vocab, toks, n, true, false, text, need + 1) == need)
        audit_prompt(s, text, (size_t)need);
    free(text);
}

static const char *audit_finish(sched_finish f) {
    switch (f) {
    case SCHED_FINISH_STOP: return "stop";
    case SCHED_FINISH_LENGTH: return "length";
    case SCHED_FINISH_DEADLINE: return "timeout";
    case SCHED_FINISH_CANCELLED: return "cancelled";
    case SCHED_FINISH_ERROR: return "error";
    default: return "";
    }
}

/* The engine's output: the completion's audit text as it comes, its counts at the end. */
static void audit_output(hreq *h, const sched_delta *d) {
    if (!h->au.item) return;
    if (d->len > 0 && h->au.whole) {
        srv_audit_completion(&h->au, d->text, d->len); /* audit_text runs on the whole, at the end */
    } else if (d->len > 0) {
        size_t n = 0;
        char *t = audit_text(h->srv, d->text, d->len, &n);
        if (t) srv_audit_completion(&h->au, t, n);
        free(t);
    }
    if (d->finish != SCHED_RUNNING) {
        srv_audit_usage(&h->au, d->n_prompt, d->n_gen, d->n_cached, audit_finish(d->finish));
        srv_audit_energy(&h->au, d->energy_j, energy_source_name(h->srv->meter.source));
    }
}

/* Ends h's record with the status its client gets (or got) and hands it to the store worker. */
static bool audit_send(hreq *h, int status, void *user) {
    server *s = h->srv;
    if (h->au.whole && h->au.generated && h->au.item) {
        size_t len = 0, n = 0;
        const char *whole = srv_audit_whole_text(&h->au, &len);
        char *t = audit_text(s, whole, len, &n);
        if (t) srv_audit_set_completion(&h->au, t, n);
        free(t);
    }
    tenants_audit *a = srv_audit_end(&h->au, status, user);
    if (a) tenants_audit_append(s->tenants, a);
    return a != NULL;
}

/* A request that ends without its last reply (the client left, or the server stopped): its
 * record all the same, with the status already sent (499: none was). Nobody waits for it. */
static void audit_abandon(hreq *h) {
    server *s = h->srv;
    if (s->au_hold == h) s->au_hold = NULL;
    if (h->held) evbuffer_free(h->held);
    h->held = NULL;
    if (!h->au.item) return;
    audit_record *r = &h->au.item->rec;
    if (!r->finish_reason[0]) snprintf(r->finish_reason, sizeof r->finish_reason, "cancelled");
    audit_send(h, h->replying ? 200 : 499, NULL);
}

static void audit_release(hreq *h, bool ok, const char *why);

static void audit_failed_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    audit_release(arg, false, "out of memory");
}

/* Queues h's record; its held reply goes when the worker answers (take_audits). */
static void audit_queue(hreq *h, int status) {
    h->auditing = true;
    if (audit_send(h, status, h)) return;
    const struct timeval now = {0, 0}; /* no record: answer 503 from the event loop */
    if (event_base_once(h->srv->base, -1, EV_TIMEOUT, audit_failed_cb, h, &now) != 0) h->auditing = false;
}

/* A /v1 request answered right away, without an hreq: one now, to hold its reply. */
static hreq *hreq_for_reply(server *s, struct evhttp_request *req, const char *route) {
    hreq *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->srv = s;
    h->req = req;
    h->route = route;
    h->ended = true;
    srv_audit_move(&h->au, s->au_req);
    h->next = s->live;
    if (s->live) s->live->prev = h;
    s->live = h;
    watch(h);
    return h;
}

/* send_body's detour: with the audit log, a /v1 request's last reply is held until its
 * record is committed. True when held (body's bytes moved). */
static bool audit_hold(server *s, struct evhttp_request *req, const char *route, int status,
                       const char *reason, struct evbuffer *body) {
    if (!s->audit) return false;
    hreq *h = s->au_hold;
    if (h && h->req == req)
        s->au_hold = NULL;
    else if (s->au_req && s->au_req_req == req)
        h = hreq_for_reply(s, req, route);
    else
        return false;
    if (!h) return false; /* out of memory: cannot happen short of that */
    h->held = evbuffer_new();
    h->held_status = status;
    h->held_reason = reason;
    if (h->held && body) evbuffer_add_buffer(h->held, body);
    audit_queue(h, status);
    return true;
}

/* The answer to a request whose record could not be written: 503, or for a stream whose
 * 200 already went, an error event instead of [DONE]. */
static void audit_refuse(hreq *h, const char *why) {
    server *s = h->srv;
    char msg[400];
    snprintf(msg, sizeof msg,
             "The audit log could not record this request, so its answer is withheld: %s. Try again later.",
             why);
    if (h->held_stream) {
        oai_error e;
        oai_fail(&e, 503, "server_error", NULL, "audit_unavailable", "%s", msg);
        char *j = oai_error_json(&e);
        struct evbuffer *b = s->scratch;
        evbuffer_add_printf(b, "data: %s\n\n", j ? j : "{}");
        evhttp_send_reply_chunk(h->req, b);
        evbuffer_drain(b, evbuffer_get_length(b));
        free(j);
        last_reply(h);
        evhttp_send_reply_end(h->req);
        return;
    }
    evhttp_clear_headers(evhttp_request_get_output_headers(h->req));
    last_reply(h);
    send_error_msg(s, h->req, h->route, 503, "server_error", "audit_unavailable", msg);
}

/* The worker answered for h's record: send its last reply, or refuse. */
static void audit_release(hreq *h, bool ok, const char *why) {
    server *s = h->srv;
    h->auditing = false;
    h->audited = true;
    if (h->req && !ok) {
        audit_refuse(h, why);
    } else if (h->req && h->held_stream) {
        evhttp_send_reply_chunk(h->req, h->held);
        last_reply(h);
        evhttp_send_reply_end(h->req);
    } else if (h->req) {
        last_reply(h);
        evhttp_send_reply(h->req, h->held_status, h->held_reason, h->held);
        http_count(&s->counts, h->route, h->held_status);
    }
    http_done(h);
    if (!ok) fprintf(stderr, "sov serve: audit record not written, request answered 503: %s\n", why);
    if (h->ended) hreq_free(h);
}

static void take_audits(server *s) {
    if (!s->audit) return;
    tenants_audit *done[64];
    int n;
    while ((n = tenants_take_audited(s->tenants, done, 64)) > 0)
        for (int i = 0; i < n; i++) {
            hreq *h = done[i]->user;
            char why[200];
            const bool ok = done[i]->status == SOV_OK;
            snprintf(why, sizeof why, "%s", done[i]->error);
            tenants_audit_free(done[i]);
            audit_release(h, ok, why);
        }
}

static bool any_auditing(const server *s) {
    for (const hreq *h = s->live; h; h = h->next)
        if (h->auditing) return true;
    return false;
}

/* ---- tenants: limits and usage ---- */

/* "6s", "6m0s", "2h3m4s": the reset times OpenAI's x-ratelimit-reset-* headers carry. */
static void fmt_duration(char *buf, size_t cap, int64_t secs) {
    if (secs < 0) secs = 0;
    if (secs < 60)
        snprintf(buf, cap, "%llds", (long long)secs);
    else if (secs < 3600)
        snprintf(buf, cap, "%lldm%llds", (long long)(secs / 60), (long long)(secs % 60));
    else
        snprintf(buf, cap, "%lldh%lldm%llds", (long long)(secs / 3600), (long long)(secs / 60 % 60),
                 (long long)(secs % 60));
}

static void add_header_int(struct evhttp_request *req, const char *k, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)(v < 0 ? 0 : v));
    add_header(req, k, buf);
}

static void add_header_reset(struct evhttp_request *req, const char *k, int64_t secs) {
    char buf[32];
    fmt_duration(buf, sizeof buf, secs);
    add_header(req, k, buf);
}

/* OpenAI's x-ratelimit-* headers for the key's limits, from the windows' counts; the
 * tokens-per-day trio is sov's own (OpenAI has no daily limit header). */
static void ratelimit_headers(struct evhttp_request *req, const tenants_key *k, const tenants_resv *r) {
    const store_reserve_res *w = &r->res;
    if (k->rpm > 0) {
        add_header_int(req, "x-ratelimit-limit-requests", k->rpm);
        add_header_int(req, "x-ratelimit-remaining-requests", k->rpm - w->minute_requests);
        add_header_reset(req, "x-ratelimit-reset-requests", w->minute_start + 60 - r->now);
    }
    if (k->tpm > 0) {
        add_header_int(req, "x-ratelimit-limit-tokens", k->tpm);
        add_header_int(req, "x-ratelimit-remaining-tokens", k->tpm - w->minute_tokens);
        add_header_reset(req, "x-ratelimit-reset-tokens", w->minute_start + 60 - r->now);
    }
    if (k->tpd > 0) {
        add_header_int(req, "x-ratelimit-limit-tokens-day", k->tpd);
        add_header_int(req, "x-ratelimit-remaining-tokens-day", k->tpd - w->day_tokens);
        add_header_reset(req, "x-ratelimit-reset-tokens-day", w->day_start + 86400 - r->now);
    }
}

/* A request's end: its tenant's counters, and its usage and quota settlement in the store
 * (what it was granted is corrected to what it used). */
static void settle(server *s, hreq *h, bool submitted, const sched_delta *d) {
    const int32_t n_prompt = d ? d->n_prompt : 0, n_gen = d ? d->n_gen : 0, n_cached = d ? d->n_cached : 0;
    if (submitted) {
        tenant_count *tc = tenant_count_get(&s->tcounts, h->key.tenant);
        if (tc) {
            tc->requests++;
            tc->prompt_tokens += (uint64_t)n_prompt;
            tc->completion_tokens += (uint64_t)n_gen;
            tc->cached_tokens += (uint64_t)n_cached;
            tc->energy_j += d ? d->energy_j : 0;
        }
    }
    if (!s->tenants || h->key.id <= 0 || h->settled) return;
    h->settled = true;
    /* tokens count once the prompt went through the model (a request dropped while it
     * waited used nothing) */
    const bool used = d && (d->started || d->n_gen > 0);
    const store_settle st = {
        .key_id = h->key.id,
        .minute_start = h->granted ? h->resv.res.minute_start : 0,
        .day_start = h->granted ? h->resv.res.day_start : 0,
        .reserved = h->granted ? h->resv.granted : 0,
        /* no delta: the server stopped with the request still out; charge it all */
        .used = !h->granted ? 0
                : d         ? (used ? (int64_t)n_prompt + n_gen : 0)
                : submitted ? h->resv.granted
                            : 0,
        .at = (int64_t)time(NULL),
        .requests = submitted ? 1 : 0,
        .prompt_tokens = submitted ? n_prompt : 0,
        .completion_tokens = submitted ? n_gen : 0,
        .cached_tokens = submitted ? n_cached : 0,
    };
    tenants_settle(s->tenants, &st);
}

/* ---- completions ---- */

/* An error before the request reached the engine: reply, settle any reservation, free. */
static void fail_early(hreq *h, int status, const char *type, const char *code, const char *msg) {
    server *s = h->srv;
    if (h->req) {
        last_reply(h);
        send_error_msg(s, h->req, h->route, status, type, code, msg);
        http_done(h);
    }
    settle(s, h, false, NULL);
    h->ended = true;
    if (!h->auditing) hreq_free(h);
}

/* Hands the request to the engine (its quota, if any, is reserved). */
static void submit(hreq *h) {
    server *s = h->srv;
    const sched_submit_result sr =
        h->embed ? sched_submit_all(s->sched, h->parts, h->n_parts) : sched_submit(s->sched, h->sr);
    if (sr == SCHED_SUBMITTED) {
        h->submitted = true;
        return;
    }
    if (sr == SCHED_QUEUE_FULL) {
        if (h->req) add_header(h->req, "Retry-After", "1");
        fail_early(h, 429, "rate_limit_exceeded", "rate_limit_exceeded",
                   "The server is at capacity: too many requests are waiting. Retry after a second.");
    } else if (sr == SCHED_TOO_LONG) {
        fail_early(h, 400, "invalid_request_error", "context_length_exceeded",
                   "The prompt needs more KV cache than the server has (raise --kv-cache-mb).");
    } else {
        fail_early(h, 503, "server_error", "shutting_down", "The server is shutting down.");
    }
}

/* The 429 of a limit that refused the reservation. */
static void refuse_limit(hreq *h) {
    const tenants_resv *r = &h->resv;
    const store_reserve_res *w = &r->res;
    const tenants_key *k = &h->key;
    char msg[400], secs[32];
    int64_t wait = 1;
    tenant_count *tc = tenant_count_get(&h->srv->tcounts, k->tenant);
    if (w->refused == STORE_LIMIT_RPM || w->refused == STORE_LIMIT_TPM) {
        const bool req = w->refused == STORE_LIMIT_RPM;
        const int64_t limit = req ? k->rpm : k->tpm, used = req ? w->minute_requests : w->minute_tokens;
        const int64_t asked = req ? 1 : r->want;
        wait = w->minute_start + 60 - r->now;
        fmt_duration(secs, sizeof secs, wait);
        if (!req && asked > limit)
            snprintf(msg, sizeof msg,
                     "Request too large for tokens per minute (TPM) on key %s… of tenant '%s': limit %lld, "
                     "requested "
                     "%lld (prompt and max_tokens). Lower max_tokens or shorten the prompt.",
                     k->prefix, k->tenant, (long long)limit, (long long)asked);
        else
            snprintf(
                msg, sizeof msg,
                "Rate limit reached for %s per minute (%s) on key %s… of tenant '%s': limit %lld, used %lld, "
                "requested %lld. Please try again in %s.",
                req ? "requests" : "tokens", req ? "RPM" : "TPM", k->prefix, k->tenant, (long long)limit,
                (long long)used, (long long)asked, secs);
        if (tc) tc->limited[req ? TENANT_LIMIT_RPM : TENANT_LIMIT_TPM]++;
    } else {
        wait = w->day_start + 86400 - r->now;
        fmt_duration(secs, sizeof secs, wait);
        snprintf(msg, sizeof msg,
                 "You exceeded the daily token quota on key %s… of tenant '%s': limit %lld, used %lld, "
                 "requested %lld "
                 "(prompt and max_tokens). It resets at 00:00 UTC, in %s.",
                 k->prefix, k->tenant, (long long)k->tpd, (long long)w->day_tokens, (long long)r->want, secs);
        if (tc) tc->limited[TENANT_LIMIT_TPD]++;
    }
    if (h->req) {
        add_header_int(h->req, "Retry-After", SOV_MAX(wait, 1));
        ratelimit_headers(h->req, k, r);
    }
    if (w->refused == STORE_LIMIT_TPD)
        fail_early(h, 429, "insufficient_quota", "insufficient_quota", msg);
    else
        fail_early(h, 429, w->refused == STORE_LIMIT_RPM ? "requests" : "tokens", "rate_limit_exceeded", msg);
}

/* A reservation came back from the store worker. */
static void reserved(server *s, tenants_resv *r) {
    hreq *h = r->user;
    h->reserving = false;
    if (!h->req) { /* the client left while it waited */
        h->granted = r->status == SOV_OK && r->granted > 0;
        settle(s, h, false, NULL);
        hreq_free(h);
        return;
    }
    if (r->status != SOV_OK) {
        char msg[320];
        snprintf(msg, sizeof msg,
                 "The state store is unavailable, so the quota of this key cannot be checked: %s. "
                 "Try again later.",
                 r->error);
        fail_early(h, 503, "server_error", "store_unavailable", msg);
        return;
    }
    if (r->res.refused != STORE_LIMIT_NONE) {
        refuse_limit(h);
        return;
    }
    h->granted = true;
    ratelimit_headers(h->req, &h->key, r);
    if (h->sr && r->granted < r->want) sched_req_limit_tokens(h->sr, (int32_t)(r->granted - h->n_prompt));
    submit(h);
}

static void take_reservations(server *s) {
    if (!s->tenants) return;
    tenants_resv *done[64];
    int n;
    while ((n = tenants_take_reserved(s->tenants, done, 64)) > 0)
        for (int i = 0; i < n; i++)
            reserved(s, done[i]);
}

/* The data policy's redact_prompts: personal data in the prompt is replaced by typed
 * placeholders before the prompt is rendered and tokenized, so the model never sees it. A
 * prompt of token ids cannot be read as text, so it is refused rather than let through. */
static bool redact_prompt(server *s, oai_request *r, oai_error *e) {
    if (r->kind == OAI_COMPLETION && !r->prompt)
        return oai_fail(e, 400, "invalid_request_error", "prompt", "unsupported_value",
                        "This server redacts personal data from prompts (redact_prompts in its data policy), "
                        "which needs the prompt as text: send 'prompt' as a string, not token ids.");
    for (size_t i = 0; i <= r->n_msgs; i++) {
        char **text = i < r->n_msgs ? (char **)&r->msgs[i].content : &r->prompt;
        if (!*text) continue;
        char *clean = redact_dup(s->policy.redact, *text, strlen(*text), NULL, &s->redacted);
        if (!clean) return oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        free(*text);
        *text = clean;
    }
    return true;
}

/* A request joins the live list and goes to the engine, or first, when its key has limits,
 * asks the store worker to reserve between min and want tokens (the event loop goes on). */
static void go_live(server *s, hreq *h, const tenants_key *key, int64_t want, int64_t min) {
    h->next = s->live;
    if (s->live) s->live->prev = h;
    s->live = h;
    watch(h);
    if (!s->tenants || !tenants_key_limited(key)) {
        submit(h);
        return;
    }
    h->reserving = true;
    h->resv = (tenants_resv){
        .user = h, .key_id = key->id, .rpm = key->rpm, .tpm = key->tpm, .tpd = key->tpd, .want = want, .min = min};
    tenants_reserve(s->tenants, &h->resv);
}

/* The body of a /v1 POST, or NULL once a 503 (shutting down) or a 413 (too large) is sent. */
static const char *request_body(server *s, struct evhttp_request *req, const char *route, size_t *out_len) {
    if (s->shutting_down) {
        send_error_msg(s, req, route, 503, "server_error", "shutting_down", "The server is shutting down.");
        return NULL;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    const size_t len = evbuffer_get_length(in);
    if (len > s->p.max_body) {
        char msg[160];
        snprintf(msg, sizeof msg, "The request body is %zu bytes; the limit is %zu.", len, s->p.max_body);
        send_error_msg(s, req, route, 413, "invalid_request_error", "request_too_large", msg);
        return NULL;
    }
    *out_len = len;
    return len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : "";
}

static void handle_completion(server *s, struct evhttp_request *req, oai_kind kind, const char *route,
                              const tenants_key *key) {
    size_t len;
    const char *body = request_body(s, req, route, &len);
    if (!body) return;
    oai_request r;
    oai_error e;
    if (!oai_parse(body, len, kind, s->info.n_vocab, &r, &e)) {
        send_error(s, req, route, &e);
        return;
    }
    if (!model_matches(s, r.model)) {
        oai_fail(&e, 404, "invalid_request_error", "model", "model_not_found",
                 "The model '%.100s' does not exist. This server serves '%.100s'.", r.model, s->p.model_id);
        oai_request_free(&r);
        send_error(s, req, route, &e);
        return;
    }
    if (s->info.encoder) {
        oai_fail(&e, 400, "invalid_request_error", "model", "unsupported_model",
                 "The model '%.100s' is an embedding model (%s encoder): it serves /v1/embeddings only.",
                 s->p.model_id, s->info.arch);
        oai_request_free(&r);
        send_error(s, req, route, &e);
        return;
    }
    if (!key->model_allowed) {
        oai_fail(&e, 403, "invalid_request_error", "model", "model_not_allowed",
                 "The key %s… of tenant '%.64s' may not use the model '%.100s'. Ask the operator to allow it "
                 "(sov keys create --models).",
                 key->prefix, key->tenant, s->p.model_id);
        oai_request_free(&r);
        tenant_count *tc = tenant_count_get(&s->tcounts, key->tenant);
        if (tc) tc->forbidden++;
        send_error(s, req, route, &e);
        return;
    }
    if (s->policy.redact_prompts && !redact_prompt(s, &r, &e)) {
        oai_request_free(&r);
        send_error(s, req, route, &e);
        return;
    }
    int32_t n_prompt = 0;
    sov_token *toks = prompt_tokens(s, &r, &n_prompt, &e);
    if (!toks) {
        oai_request_free(&r);
        send_error(s, req, route, &e);
        return;
    }
    if (n_prompt >= s->p.n_ctx || n_prompt == 0) {
        if (n_prompt == 0)
            oai_fail(&e, 400, "invalid_request_error", kind == OAI_CHAT ? "messages" : "prompt",
                     "empty_prompt", "The prompt is empty.");
        else
            oai_fail(
                &e, 400, "invalid_request_error", kind == OAI_CHAT ? "messages" : "prompt",
                "context_length_exceeded",
                "This model's maximum context length is %d tokens. However, your %s resulted in %d tokens "
                "(at least one must be left to generate).",
                s->p.n_ctx, kind == OAI_CHAT ? "messages" : "prompt", n_prompt);
        free(toks);
        oai_request_free(&r);
        send_error(s, req, route, &e);
        return;
    }

    sched_req_params rp = {.sp = sov_sampler_default_params()};
    rp.sp.temperature = (float)r.temperature;
    rp.sp.top_p = r.top_p > 0 ? (float)r.top_p : FLT_MIN;
    rp.sp.top_k = r.top_k;
    rp.sp.min_p = (float)r.min_p;
    rp.sp.repeat_penalty = (float)r.repeat_penalty;
    rp.sp.repeat_last_n = 64;
    rp.sp.presence_penalty = (float)r.presence_penalty;
    rp.sp.frequency_penalty = (float)r.frequency_penalty;
    rp.sp.seed = r.has_seed ? r.seed : next_seed(s);
    const int64_t room = s->p.n_ctx - n_prompt;
    const int64_t want = r.max_tokens > 0 ? r.max_tokens : kind == OAI_COMPLETION ? 16 : room;
    rp.max_tokens = (int32_t)SOV_MIN(want, room);
    rp.ignore_eos = r.ignore_eos;
    rp.top_logprobs = r.logprobs ? r.top_logprobs : -1;
    for (int32_t i = 0; i < r.n_stops; i++)
        rp.stops[i] = r.stops[i];
    rp.n_stops = r.n_stops;
    rp.bias_tok = r.bias_tok;
    rp.bias = r.bias;
    rp.n_bias = r.n_bias;
    rp.deadline = s->p.request_timeout_s > 0 ? sov_now_s() + s->p.request_timeout_s : 0;
    /* the prefix cache and the fair scheduler see the authenticated tenant, never
     * anything the client sent */
    rp.tenant = key->tenant;
    rp.weight = key->weight;
    /* chat replies are taken apart into content, reasoning and tool calls when the model's
     * template says it writes them (reply.h); harmony's channels always */
    reply_params how = {0};
    const bool tools_on = kind == OAI_CHAT && r.tools_json && r.tool_choice != OAI_TOOLS_NONE;
    if (kind == OAI_CHAT) {
        const reply_style *st = &s->reply_style;
        how.format = st->format == REPLY_HARMONY || tools_on ? st->format : REPLY_PLAIN;
        how.think_tags = st->think_tags;
        how.starts_thinking = st->think_tags && prompt_opens_think(s, toks, n_prompt);
        how.id_seed = next_seed(s);
        how.max_calls = r.parallel_tool_calls ? 0 : 1;
    }
    const bool parse = how.format != REPLY_PLAIN || how.think_tags;
    rp.render_special = parse;
    rp.grammar = r.grammar; /* response_format; the request takes its own reference */
    gram *forced = NULL;      /* tool_choice required or named: a call under the tool's schema */
    if (tools_on && (r.tool_choice == OAI_TOOLS_REQUIRED || r.tool_choice == OAI_TOOLS_NAMED)) {
        if (r.grammar)
            oai_fail(&e, 400, "invalid_request_error", "tool_choice", "invalid_value",
                     "'tool_choice' forcing a call cannot be combined with 'response_format' or 'grammar'.");
        if (r.grammar || !forced_call_grammar(&r, &how, &forced, &e)) {
            free(toks);
            oai_request_free(&r);
            send_error(s, req, route, &e);
            return;
        }
        rp.grammar = forced;
    }

    hreq *h = calloc(1, sizeof *h);
    if (h) h->sr = sched_req_new(toks, n_prompt, &rp, h);
    free(toks);
    gram_free(forced); /* the engine's request holds its own reference */
    if (!h || !h->sr) {
        free(h);
        oai_request_free(&r);
        send_error_msg(s, req, route, 500, "server_error", NULL, "out of memory");
        return;
    }
    h->srv = s;
    h->req = req;
    h->route = route;
    h->stream = r.stream;
    h->key = *key;
    h->n_prompt = n_prompt;
    snprintf(h->id, sizeof h->id, "%s-%016llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)next_seed(s));
    snprintf(h->model, sizeof h->model, "%s", s->p.model_id);
    h->rp = (oai_reply){kind,     h->id,           (long long)time(NULL),      h->model,
                        s->vocab, rp.top_logprobs, r.stream && r.include_usage, parse, how};
    if (parse) reply_stream_init(&h->rs, &how);
    if (s->au_req) srv_audit_move(&h->au, s->au_req); /* the request's record goes with it */
    srv_audit_response_id(&h->au, h->id);
    const bool explicit_max = r.max_tokens > 0;
    oai_request_free(&r);

    /* a key with limits reserves prompt + max_tokens first (on the store worker; the event
     * loop goes on); without an explicit max_tokens a smaller grant will do */
    const int64_t most = (int64_t)n_prompt + rp.max_tokens;
    go_live(s, h, key, most, explicit_max ? most : (int64_t)n_prompt + 1);
}

/* ---- embeddings ---- */

/* An input's tokens: text as the tokenizer splits it (BOS/EOS as the vocabulary asks;
 * text that spells a control token stays text: an input is data), ids as given. */
static sov_token *embd_tokens(server *s, const oai_embd_request *r, int32_t i, int32_t *n, oai_error *e) {
    if (r->toks) {
        sov_token *t = malloc((size_t)r->n_toks[i] * sizeof *t);
        if (!t) {
            oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
            return NULL;
        }
        memcpy(t, r->toks[i], (size_t)r->n_toks[i] * sizeof *t);
        *n = r->n_toks[i];
        return t;
    }
    const size_t len = r->text_len[i];
    int32_t cap = len < (size_t)s->p.n_ctx ? (int32_t)len + 8 : s->p.n_ctx + 8;
    sov_token *t = malloc((size_t)cap * sizeof *t);
    int32_t got = t ? sov_tokenize(s->vocab, r->texts[i], len, true, false, t, cap) : SOV_ERR_NOMEM;
    if (got > cap && got <= s->p.n_ctx + 8) { /* rare: more tokens than bytes */
        sov_token *p = realloc(t, (size_t)got * sizeof *t);
        if (p) t = p;
        got = p ? sov_tokenize(s->vocab, r->texts[i], len, true, false, t, got) : SOV_ERR_NOMEM;
    }
    if (got < 0) {
        free(t);
        oai_fail(e, got == SOV_ERR_NOMEM ? 500 : 400, got == SOV_ERR_NOMEM ? "server_error" : "invalid_request_error",
                 "input", NULL, "Cannot tokenize input %d: %s", (int)i, sov_last_error());
        return NULL;
    }
    *n = got; /* may exceed cap when too long: the caller refuses it by the count */
    return t;
}

/* The audit's prompt of an embeddings request: its inputs, one per line (token inputs as
 * their text, control tokens spelled out). */
static void audit_embd_inputs(server *s, const oai_embd_request *r) {
    if (!s->au_req) return;
    struct evbuffer *b = evbuffer_new();
    for (int32_t i = 0; b && i < r->n; i++) {
        if (i) evbuffer_add(b, "\n", 1);
        if (r->texts) {
            evbuffer_add(b, r->texts[i], r->text_len[i]);
            continue;
        }
        const int32_t need = sov_detokenize(s->vocab, r->toks[i], r->n_toks[i], true, false, NULL, 0);
        char *text = need >= 0 ? malloc((size_t)need + 1) : NULL;
        if (text && sov_detokenize(s->vocab, r->toks[i], r->n_toks[i], true, false, text, need + 1) == need)
            evbuffer_add(b, text, (size_t)need);
        free(text);
    }
    if (b) {
        const size_t len = evbuffer_get_length(b);
        audit_prompt(s, len ? (const char *)evbuffer_pullup(b, -1) : "", len);
        evbuffer_free(b);
    }
}

/* The data policy's redact_prompts applies to inputs as to prompts; token ids cannot be
 * read, so they are refused. */
static bool redact_inputs(server *s, oai_embd_request *r, oai_error *e) {
    if (!r->texts)
        return oai_fail(e, 400, "invalid_request_error", "input", "unsupported_value",
                        "This server redacts personal data from prompts (redact_prompts in its data policy), "
                        "which needs the input as text: send 'input' as strings, not token ids.");
    for (int32_t i = 0; i < r->n; i++) {
        size_t n = 0;
        char *clean = redact_dup(s->policy.redact, r->texts[i], r->text_len[i], &n, &s->redacted);
        if (!clean) return oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        free(r->texts[i]);
        r->texts[i] = clean;
        r->text_len[i] = n;
    }
    return true;
}

/* One input's end. When it is the last, the whole request's: its answer, its audit
 * record's counts and its tenant's settlement. */
static void embed_delta(server *s, hreq *h, sched_req *r, sched_delta *d) {
    free(d->text);
    free(d->toks);
    if (d->finish == SCHED_RUNNING) {
        free(d->embd);
        return;
    }
    int32_t k = 0;
    while (k < h->n_parts && h->parts[k] != r) k++;
    bool ok = d->finish == SCHED_FINISH_STOP && d->embd && d->n_embd == s->info.n_embd && k < h->n_parts;
    for (int32_t i = 0; ok && i < d->n_embd; i++) ok = isfinite(d->embd[i]);
    if (ok) {
        memcpy(h->vecs + (size_t)k * (size_t)s->info.n_embd, d->embd, (size_t)d->n_embd * sizeof *d->embd);
    } else if (h->embd_fail == SCHED_RUNNING) { /* the first failure: the rest is not needed */
        h->embd_fail = d->finish == SCHED_FINISH_STOP ? SCHED_FINISH_ERROR : d->finish;
        snprintf(h->embd_error, sizeof h->embd_error, "%s",
                 d->finish == SCHED_FINISH_STOP ? "the engine produced no finite embedding"
                 : d->finish == SCHED_FINISH_LENGTH ? "the input does not fit the KV cache"
                                                    : d->error);
        for (int32_t i = 0; i < h->n_parts; i++) sched_cancel(s->sched, h->parts[i]);
    }
    if (d->started) h->embd_tokens += d->n_prompt;
    free(d->embd);
    if (++h->n_ended < h->n_parts) return;

    const sched_finish fin = h->embd_fail == SCHED_RUNNING ? SCHED_FINISH_STOP : h->embd_fail;
    const sched_delta all = {.n_prompt = (int32_t)SOV_MIN(h->embd_tokens, INT32_MAX),
                             .started = h->embd_tokens > 0,
                             .finish = fin};
    if (h->au.item) srv_audit_usage(&h->au, h->embd_tokens, 0, 0, audit_finish(fin));
    if (h->req && !h->auditing) {
        if (fin == SCHED_FINISH_STOP) {
            char *j = oai_embd_json(h->model, h->vecs, h->n_parts, s->info.n_embd, h->base64, h->embd_tokens);
            last_reply(h);
            if (j)
                send_json(s, h->req, h->route, 200, j);
            else
                send_error_msg(s, h->req, h->route, 500, "server_error", NULL, "out of memory");
            free(j);
        } else {
            sched_delta e = {.finish = fin};
            memcpy(e.error, h->embd_error, sizeof e.error);
            if (!early_error(h, &e)) { /* cannot happen: fin is a failure */
                last_reply(h);
                send_error_msg(s, h->req, h->route, 500, "server_error", NULL, h->embd_error);
            }
        }
        http_done(h);
    }
    if (h->req && !h->auditing) { /* cannot happen: the reply ended it */
        stop_watching(h);
        h->req = NULL;
    }
    settle(s, h, true, &all);
    h->ended = true;
    if (!h->auditing) hreq_free(h);
}

static void handle_embeddings(server *s, struct evhttp_request *req, const char *route, const tenants_key *key) {
    size_t len;
    const char *body = request_body(s, req, route, &len);
    if (!body) return;
    oai_embd_request r;
    oai_error e;
    if (!oai_embd_parse(body, len, s->info.n_vocab, &r, &e)) {
        send_error(s, req, route, &e);
        return;
    }
    bool ok = true;
    if (!model_matches(s, r.model)) {
        ok = oai_fail(&e, 404, "invalid_request_error", "model", "model_not_found",
                      "The model '%.100s' does not exist. This server serves '%.100s'.", r.model, s->p.model_id);
    } else if (!key->model_allowed) {
        ok = oai_fail(&e, 403, "invalid_request_error", "model", "model_not_allowed",
                      "The key %s… of tenant '%.64s' may not use the model '%.100s'. Ask the operator to allow it "
                      "(sov keys create --models).",
                      key->prefix, key->tenant, s->p.model_id);
        tenant_count *tc = tenant_count_get(&s->tcounts, key->tenant);
        if (tc) tc->forbidden++;
    } else if (sov_pooling_check(s->info.pooling) != SOV_OK) {
        ok = oai_fail(&e, 400, "invalid_request_error", "model", "unsupported_model",
                      "The model '%.100s' cannot make embeddings: its pooling_type is %d (%s); mean, cls and last "
                      "are supported.",
                      s->p.model_id, s->info.pooling, sov_pooling_name(s->info.pooling));
    } else if (r.dimensions >= 0 && r.dimensions != s->info.n_embd) {
        ok = oai_fail(&e, 400, "invalid_request_error", "dimensions", "unsupported_value",
                      "'dimensions' = %lld is not supported: this model's embeddings have %d dimensions (omit the "
                      "field, or send %d).",
                      (long long)r.dimensions, s->info.n_embd, s->info.n_embd);
    } else if (s->policy.redact_prompts) {
        ok = redact_inputs(s, &r, &e);
    }
    if (!ok) {
        oai_embd_request_free(&r);
        send_error(s, req, route, &e);
        return;
    }
    audit_embd_inputs(s, &r);

    hreq *h = calloc(1, sizeof *h);
    if (h) {
        h->parts = calloc((size_t)r.n, sizeof *h->parts);
        h->vecs = malloc((size_t)r.n * (size_t)s->info.n_embd * sizeof *h->vecs);
    }
    if (!h || !h->parts || !h->vecs) {
        if (h) free(h->parts);
        free(h);
        oai_embd_request_free(&r);
        send_error_msg(s, req, route, 500, "server_error", NULL, "out of memory");
        return;
    }
    h->srv = s;
    h->embed = true;
    h->n_parts = r.n;
    sched_req_params rp = {.embed = true,
                           .deadline = s->p.request_timeout_s > 0 ? sov_now_s() + s->p.request_timeout_s : 0,
                           .tenant = key->tenant, /* the authenticated tenant, never the client's word */
                           .weight = key->weight};
    int64_t total = 0;
    for (int32_t i = 0; ok && i < r.n; i++) {
        int32_t n = 0;
        sov_token *toks = embd_tokens(s, &r, i, &n, &e);
        if (!toks) {
            ok = false;
        } else if (n == 0) {
            ok = oai_fail(&e, 400, "invalid_request_error", "input", "invalid_value",
                          "Invalid 'input[%d]': it has no tokens.", (int)i);
        } else if (n > s->p.n_ctx) {
            ok = oai_fail(&e, 400, "invalid_request_error", "input", "context_length_exceeded",
                          "This model's maximum context length is %d tokens, however input %d has %d tokens. "
                          "Shorten it.",
                          s->p.n_ctx, (int)i, n);
        } else if (s->info.encoder && n > SOV_MIN(s->p.n_batch, s->info.n_ctx_train)) {
            /* an encoder input runs whole in one batch, inside its trained positions */
            ok = oai_fail(&e, 400, "invalid_request_error", "input", "context_length_exceeded",
                          "This encoder takes at most %d tokens per input (its %d positions, the server's --batch "
                          "%d), however input %d has %d tokens. Shorten it.",
                          SOV_MIN(s->p.n_batch, s->info.n_ctx_train), s->info.n_ctx_train, s->p.n_batch, (int)i, n);
        } else if (!(h->parts[i] = sched_req_new(toks, n, &rp, h))) {
            ok = oai_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
        }
        total += n;
        free(toks);
    }
    h->base64 = r.base64;
    oai_embd_request_free(&r);
    if (!ok) {
        for (int32_t i = 0; i < h->n_parts; i++) sched_req_release(h->parts[i]);
        free(h->parts);
        free(h->vecs);
        free(h);
        send_error(s, req, route, &e);
        return;
    }
    h->req = req;
    h->route = route;
    h->key = *key;
    h->n_prompt = (int32_t)SOV_MIN(total, INT32_MAX);
    h->embd_fail = SCHED_RUNNING;
    snprintf(h->id, sizeof h->id, "embd-%016llx", (unsigned long long)next_seed(s));
    snprintf(h->model, sizeof h->model, "%s", s->p.model_id);
    if (s->au_req) srv_audit_move(&h->au, s->au_req); /* the request's record goes with it */
    srv_audit_response_id(&h->au, h->id);

    go_live(s, h, key, total, total); /* a key with limits reserves the input tokens first */
}

/* ---- other endpoints ---- */

/* The served model as /v1/models describes it (OpenAI's fields, then sov's "meta"). */
static json_t *model_json(const server *s, bool meta) {
    json_t *m = json_pack("{ss ss si ss}", "id", s->p.model_id, "object", "model", "created", 0, "owned_by", "sov");
    if (m && meta)
        json_object_set_new(m, "meta",
                            json_pack("{si sI si ss ss ss sI}", "n_ctx", s->p.n_ctx, "n_params",
                                      (json_int_t)s->info.n_params, "n_vocab", s->info.n_vocab, "arch", s->info.arch,
                                      "weight_type", s->info.weight_type, "sha256",
                                      s->p.model_sha256 ? s->p.model_sha256 : "", "file_bytes",
                                      (json_int_t)s->info.file_bytes));
    json_t *meta_obj = m && meta ? json_object_get(m, "meta") : NULL;
    if (meta_obj) {
        /* the data policy's region label: null when the policy names none */
        json_object_set_new(meta_obj, "region", s->policy.region[0] ? json_string(s->policy.region) : json_null());
        /* signed models (docs/SIGNING.md): was a trusted key's signature checked, and whose */
        json_object_set_new(meta_obj, "signed", json_boolean(s->p.model_signer != NULL));
        json_object_set_new(meta_obj, "signer", s->p.model_signer ? json_string(s->p.model_signer) : json_null());
    }
    return m;
}

static void handle_models(server *s, struct evhttp_request *req, const char *route, const char *one,
                          const tenants_key *key) {
    json_t *j = NULL;
    if (one) {
        if (!model_matches(s, one) || !key->model_allowed) {
            char msg[300];
            snprintf(msg, sizeof msg, "The model '%.100s' does not exist.", one);
            send_error_msg(s, req, route, 404, "invalid_request_error", "model_not_found", msg);
            return;
        }
        j = model_json(s, false);
    } else {
        j = json_pack("{ss s[]}", "object", "list", "data");
        if (j && key->model_allowed) json_array_append_new(json_object_get(j, "data"), model_json(s, true));
    }
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (body) send_json(s, req, route, 200, body);
    else send_error_msg(s, req, route, 500, "server_error", NULL, "out of memory");
    free(body);
}

/* The data policy as an info series (its region label as the issue asks, with the rest of
 * what an operator checks) and the prompt findings redact_prompts replaced. Region holds
 * only [A-Za-z0-9._:/-] (policy.c), so it needs no escaping as a label value. */
static void policy_metrics(const server *s, struct evbuffer *b) {
    const sov_policy *p = &s->policy;
    evbuffer_add_printf(
        b,
        "# HELP sov_policy_info The data-handling policy (sov serve --policy).\n"
        "# TYPE sov_policy_info gauge\n"
        "sov_policy_info{region=\"%s\",retention=\"%s\",retention_days=\"%d\",redact_prompts=\"%s\","
        "require_signed_models=\"%s\",allow_egress=\"%s\"} 1\n"
        "# HELP sov_prompt_redactions_total Personal data replaced in prompts before inference, by kind.\n"
        "# TYPE sov_prompt_redactions_total counter\n",
        p->region, policy_retention_name(p->retention), (int)p->retention_days,
        p->redact_prompts ? "true" : "false", p->require_signed_models ? "true" : "false",
        p->allow_egress ? "true" : "false");
    for (int k = 0; k < REDACT_KIND_COUNT; k++)
        evbuffer_add_printf(b, "sov_prompt_redactions_total{kind=\"%s\"} %llu\n",
                            redact_kind_name((redact_kind)k), (unsigned long long)s->redacted.n[k]);
}

static void handle_metrics(server *s, struct evhttp_request *req) {
    sched_stats st;
    sched_get_stats(s->sched, &st);
    store_figures sf = {0};
    if (s->tenants) {
        tenants_stats ts;
        tenants_get_stats(s->tenants, &ts);
        sf = (store_figures){ts.store_errors,
                             ts.reservations,
                             ts.reserve_calls,
                             ts.reloads,
                             ts.settles_pending,
                             ts.settles_dropped,
                             ts.reserve_seconds,
                             ts.store_ok,
                             (int64_t)tenants_key_count(s->tenants),
                             tenants_auth_required(s->tenants)};
    }
    http_count(&s->counts, "/metrics", 200); /* this response counts itself */
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    metrics_write(b, &s->counts, &st, &s->tcounts, s->tenants ? &sf : NULL);
    policy_metrics(s, b);
    if (s->p.tls) tls_metrics_write(s->p.tls, b);
    char sandbox[1024];
    evbuffer_add(b, sandbox, sandbox_metrics(&s->sandbox, sandbox, sizeof sandbox));
    add_header(req, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    head_no_body(req, b);
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

_Static_assert(TENANTS_AUTH_COUNT <= SOV_ARRAY_LEN(((tenant_counts *)0)->auth_failures),
               "every tenants_auth reason has a counter");

/* Who is calling: with keys in the store, the Authorization header's key; without, the
 * default tenant. Sends the 401/403 and returns false when the request may not go on. */
static bool authenticate(server *s, struct evhttp_request *req, const char *route, bool admin_only,
                         tenants_key *key) {
    if (!s->tenants || !tenants_auth_required(s->tenants)) {
        *key = (tenants_key){.tenant = "default", .weight = 1, .admin = true, .model_allowed = true};
        if (s->au_req) srv_audit_key(s->au_req, key->tenant, key->id);
        return true;
    }
    struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
    const char *value = NULL;
    int n = 0;
    for (struct evkeyval *kv = hdrs->tqh_first; kv; kv = kv->next.tqe_next)
        if (evutil_ascii_strcasecmp(kv->key, "Authorization") == 0 && n++ == 0) value = kv->value;
    /* under mTLS the verified client certificate may stand for a key (server/tls.h) */
    char subject[STORE_SUBJECT_MAX + 2] = "";
    const bool cert = s->p.tls && tls_peer_subject(req, subject, sizeof subject);
    const tenants_auth a = n > 1 ? TENANTS_AUTH_MALFORMED
                                 : tenants_authenticate_peer(s->tenants, value, cert ? subject : NULL, key);
    if (s->au_req && n <= 1) srv_audit_key(s->au_req, key->tenant, key->id);
    if (a == TENANTS_AUTH_OK) {
        if (!admin_only || key->admin) return true;
        send_error_msg(s, req, route, 403, "invalid_request_error", "admin_key_required",
                       "This endpoint needs an admin key (sov keys create --admin), or start the server with "
                       "--metrics-open.");
        return false;
    }
    s->tcounts.auth_failures[a]++;
    char msg[300];
    switch (a) {
    case TENANTS_AUTH_MISSING:
        snprintf(msg, sizeof msg,
                 "You didn't provide an API key. You need to provide your API key in an "
                 "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
        break;
    case TENANTS_AUTH_MALFORMED:
        snprintf(msg, sizeof msg,
                 "The Authorization header is malformed: it must be one header of the form "
                 "'Authorization: Bearer YOUR_KEY'.");
        break;
    case TENANTS_AUTH_REVOKED:
        snprintf(msg, sizeof msg, "The API key %s… has been revoked. Ask the operator for a new one.",
                 key->prefix);
        break;
    case TENANTS_AUTH_CERT_UNBOUND:
        snprintf(msg, sizeof msg,
                 "You didn't provide an API key, and your client certificate '%.120s' stands for none. Send "
                 "Authorization: Bearer YOUR_KEY, or ask the operator to bind the certificate to a key.",
                 subject);
        break;
    case TENANTS_AUTH_CERT_MISMATCH:
        snprintf(msg, sizeof msg,
                 "The API key and the client certificate do not go together: a key bound to a certificate "
                 "works only over a connection with that certificate, and a certificate that stands for a "
                 "key allows only keys of that key's tenant.");
        break;
    default:
        snprintf(msg, sizeof msg,
                 "Incorrect API key provided. Check the key, or ask the operator for one "
                 "(sov keys create).");
        break;
    }
    add_header(req, "WWW-Authenticate", "Bearer realm=\"sov\"");
    send_error_msg(s, req, route, 401, "invalid_request_error",
                   a == TENANTS_AUTH_MISSING || a == TENANTS_AUTH_CERT_UNBOUND ? "missing_api_key"
                                                                               : "invalid_api_key",
                   msg);
    return false;
}

/* /ready: 200 while accepting requests, 503 while shutting down; the body names the
 * data policy's region (null when it names none) and what the sandbox enforces
 * (docs/SANDBOX.md). */
static void send_ready(server *s, struct evhttp_request *req, const char *route) {
    json_t *j = json_pack("{ss so ss sb}", "status", s->shutting_down ? "shutting_down" : "ready", "region",
                          s->policy.region[0] ? json_string(s->policy.region) : json_null(), "sandbox",
                          s->sandbox.active ? s->sandbox.summary : "off", "egress_locked", s->sandbox.egress_locked);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    send_json(s, req, route, s->shutting_down ? 503 : 200,
              body ? body : s->shutting_down ? "{\"status\":\"shutting_down\"}" : "{\"status\":\"ready\"}");
    free(body);
}

/* ---- the chat page and the operator console (server/web.h, docs/WEB.md) ---- */

static void web_headers(struct evhttp_request *req) {
    add_header(req, "Content-Security-Policy", web_csp);
    add_header(req, "X-Content-Type-Options", "nosniff");
    add_header(req, "Referrer-Policy", "no-referrer");
    add_header(req, "X-Frame-Options", "DENY");
}

/* An embedded file: 304 when the client's copy is current, gzip'd when it accepts that. */
static void send_asset(server *s, struct evhttp_request *req, const web_asset *a) {
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    web_headers(req);
    add_header(req, "ETag", a->etag);
    add_header(req, "Cache-Control", "no-cache"); /* revalidate: a new build has new tags */
    add_header(req, "Vary", "Accept-Encoding");
    if (web_etag_matches(evhttp_find_header(in, "If-None-Match"), a->etag)) {
        evhttp_send_reply(req, 304, "Not Modified", NULL);
        http_count(&s->counts, "/web", 304);
        return;
    }
    const bool gz = a->gz_len < a->len && web_accepts_gzip(evhttp_find_header(in, "Accept-Encoding"));
    add_header(req, "Content-Type", a->content_type);
    if (gz) add_header(req, "Content-Encoding", "gzip");
    const size_t len = gz ? a->gz_len : a->len;
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add_reference(b, gz ? a->gz : a->data, len, NULL, NULL);
    head_no_body(req, b);
    evhttp_send_reply(req, 200, "OK", b);
    if (b) evbuffer_free(b);
    http_count(&s->counts, "/web", 200);
}

/* /console/api/stats: the console's snapshot. Readable by whoever may read /metrics (an
 * admin key, or anyone with --metrics-open); the tenants' figures need an admin key. */
static void handle_console_stats(server *s, struct evhttp_request *req, const char *route) {
    tenants_key key = {0};
    const bool keyless =
        s->p.metrics_open && !evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!keyless && !authenticate(s, req, route, !s->p.metrics_open, &key)) return;
    const bool auth_required = s->tenants && tenants_auth_required(s->tenants);
    sched_stats st;
    sched_get_stats(s->sched, &st);
    const web_figures f = {.model_id = s->p.model_id,
                           .model_name = s->info.name ? s->info.name : "",
                           .arch = s->info.arch ? s->info.arch : "",
                           .weight_type = s->info.weight_type ? s->info.weight_type : "",
                           .sha256 = s->p.model_sha256 ? s->p.model_sha256 : "",
                           .signer = s->p.model_signer,
                           .n_params = s->info.n_params,
                           .file_bytes = s->info.file_bytes,
                           .n_ctx = s->p.n_ctx,
                           .n_vocab = s->info.n_vocab,
                           .isa = s->isa ? s->isa : "",
                           .threads = s->threads,
                           .region = s->policy.region,
                           .sandbox_active = s->sandbox.active,
                           .egress_locked = s->sandbox.egress_locked,
                           .sandbox = s->sandbox.active ? s->sandbox.summary : "off",
                           .auth_required = auth_required,
                           .admin = keyless ? !auth_required : key.admin,
                           .uptime_s = sov_now_s() - s->started};
    char *j = web_stats_json(&st, &s->counts, &s->tcounts, &f);
    web_headers(req);
    add_header(req, "Cache-Control", "no-store");
    if (j) send_json(s, req, route, 200, j);
    else send_error_msg(s, req, route, 500, "server_error", NULL, "out of memory");
    free(j);
}

/* The pages and their API; false when path is neither. */
static bool handle_web(server *s, struct evhttp_request *req, const char *path, bool get) {
    const web_asset *a = web_find(path);
    const char *route = a ? "/web" : strcmp(path, "/console/api/stats") == 0 ? "/console/api/stats" : NULL;
    if (!route) return false;
    if (!get) {
        add_header(req, "Allow", "GET");
        send_error_msg(s, req, route, 405, "invalid_request_error", NULL, "Use GET.");
    } else if (a) {
        send_asset(s, req, a);
    } else {
        handle_console_stats(s, req, route);
    }
    return true;
}

/* What the admin API (server/admin.h) asks of the server. */
static bool admin_auth_cb(void *srv, struct evhttp_request *req, const char *route, tenants_key *key) {
    return authenticate(srv, req, route, false, key);
}

static void admin_count_cb(void *srv, const char *route, int status) {
    http_count(&((server *)srv)->counts, route, status);
}

static void admin_poll_cb(void *srv) { poll_keys(srv); }

static void on_request(struct evhttp_request *req, void *arg) {
    server *s = arg;
    if (s->p.tls && !tls_request_is_tls(req)) { /* a TLS bufferevent could not be made: never plain */
        send_error_msg(s, req, "other", 400, "invalid_request_error", NULL, "This port speaks HTTPS only.");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path) {
        send_error_msg(s, req, "other", 400, "invalid_request_error", NULL, "Bad request.");
        return;
    }
    const enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const bool get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD, post = m == EVHTTP_REQ_POST;
    if (handle_web(s, req, path, get)) return;
    if (admin_handle(s->admin, req, path)) return;
    static const struct {
        const char *path;
        bool post;
    } routes[] = {{"/v1/chat/completions", true},
                  {"/v1/completions", true},
                  {"/v1/models", false},
                  {"/health", false},
                  {"/ready", false},
                  {"/metrics", false},
                  {"/v1/embeddings", true}};
    const char *route = NULL;
    bool want_post = false;
    for (size_t i = 0; i < SOV_ARRAY_LEN(routes); i++) {
        if (strcmp(path, routes[i].path) == 0) {
            route = routes[i].path;
            want_post = routes[i].post;
        }
    }
    tenants_key key;
    if (!route && strncmp(path, "/v1/models/", 11) == 0) {
        route = "/v1/models";
        if (!get) {
            send_error_msg(s, req, route, 405, "invalid_request_error", NULL, "Use GET.");
            return;
        }
        if (!authenticate(s, req, route, false, &key)) return;
        char *name = evhttp_decode_uri(path + 11);
        handle_models(s, req, route, name ? name : "", &key);
        free(name);
        return;
    }
    if (!route) {
        char msg[200];
        snprintf(msg, sizeof msg, "Unknown path '%.100s'.", path);
        send_error_msg(s, req, "other", 404, "invalid_request_error", "unknown_url", msg);
        return;
    }
    if (want_post ? !post : !get) {
        add_header(req, "Allow", want_post ? "POST" : "GET");
        send_error_msg(s, req, route, 405, "invalid_request_error", NULL,
                       want_post ? "Use POST." : "Use GET.");
        return;
    }
    if (route == routes[3].path) {
        send_json(s, req, route, 200, "{\"status\":\"ok\"}");
        return;
    }
    if (route == routes[4].path) {
        send_ready(s, req, route);
        return;
    }
    const bool metrics = route == routes[5].path;
    if (metrics && s->p.metrics_open) {
        handle_metrics(s, req);
        return;
    }
    if (!authenticate(s, req, route, metrics, &key)) return;
    if (route == routes[0].path)
        handle_completion(s, req, OAI_CHAT, route, &key);
    else if (route == routes[1].path)
        handle_completion(s, req, OAI_COMPLETION, route, &key);
    else if (route == routes[2].path)
        handle_models(s, req, route, NULL, &key);
    else if (route == routes[6].path)
        handle_embeddings(s, req, route, &key);
    else
        handle_metrics(s, req);
}


/* The client's address, for the audit record. */
static void peer_of(struct evhttp_request *req, char *buf, size_t cap) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon) evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(buf, cap, "%s", addr ? addr : "");
}

/* The path as the record names it: printable ASCII (the rest '?'), cut to fit. */
static void endpoint_of(const char *path, char *buf, size_t cap) {
    size_t i = 0;
    for (; path[i] && i + 1 < cap; i++)
        buf[i] = path[i] > 0x20 && path[i] < 0x7f ? path[i] : '?';
    buf[i] = '\0';
}

/* Every request: a /v1 one gets an audit record first (filled and queued as it is
 * answered), then on_request handles it. */
static void on_request_audited(struct evhttp_request *req, void *arg) {
    server *s = arg;
    if (s->p.node) add_header(req, "X-Sov-Node", s->p.node); /* which replica answered (docs/REPLICAS.md) */
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!s->audit || !path || strncmp(path, "/v1", 3) != 0 || (path[3] != '/' && path[3] != '\0')) {
        on_request(req, arg);
        return;
    }
    char endpoint[AUDIT_TEXT_MAX + 1], client[64];
    endpoint_of(path, endpoint, sizeof endpoint);
    peer_of(req, client, sizeof client);
    srv_audit au;
    srv_audit_begin(&au, &s->au_cfg, endpoint, client);
    s->au_req = &au;
    s->au_req_req = req;
    on_request(req, arg);
    s->au_req = NULL;
    s->au_req_req = NULL;
    srv_audit_drop(&au); /* empty: the reply (or the completion's hreq) took the record */
}

/* ---- shutdown ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    server *s = arg;
    if (!s->shutting_down) return;
    if (!s->cancelled_all && sov_now_s() > s->shutdown_deadline) {
        fprintf(stderr, "sov serve: grace period over, cancelling %d request(s)\n", sched_active(s->sched));
        sched_cancel_all(s->sched);
        s->cancelled_all = true;
    }
    take_reservations(s);
    take_audits(s);
    admin_take(s->admin);
    deliver(s);
    if (s->live || sched_active(s->sched) > 0 || admin_busy(s->admin)) return;
    /* every answer is complete; leave once their last bytes are written (a client that
     * stopped reading holds the exit up to a little past the grace period, no longer) */
    if (!s->flushing || sov_now_s() > s->shutdown_deadline + 1.0) event_base_loopexit(s->base, NULL);
}

static bool any_reserving(const server *s) {
    for (const hreq *h = s->live; h; h = h->next)
        if (h->reserving) return true;
    return false;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    server *s = arg;
    if (s->shutting_down) {
        fprintf(stderr, "sov serve: second signal, cancelling everything\n");
        s->shutdown_deadline = 0;
        return;
    }
    s->shutting_down = true;
    s->shutdown_deadline = sov_now_s() + s->p.shutdown_timeout_s;
    fprintf(stderr, "sov serve: %s: no new requests; %d running or waiting get up to %.0f s to finish\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", sched_active(s->sched), s->p.shutdown_timeout_s);
    if (s->sock) {
        evhttp_del_accept_socket(s->http, s->sock);
        s->sock = NULL;
    }
    sched_close(s->sched);
    const struct timeval tv = {0, 50 * 1000};
    event_add(s->tick_ev, &tv);
}

/* ---- start and stop ---- */

static int start(server *s) {
    if (pipe(s->pipe_fd) != 0) return fprintf(stderr, "sov serve: pipe: %s\n", strerror(errno)), 1;
    for (int i = 0; i < 2; i++) {
        fcntl(s->pipe_fd[i], F_SETFL, fcntl(s->pipe_fd[i], F_GETFL) | O_NONBLOCK);
        fcntl(s->pipe_fd[i], F_SETFD, FD_CLOEXEC);
    }
    s->base = event_base_new();
    s->http = s->base ? evhttp_new(s->base) : NULL;
    s->scratch = evbuffer_new();
    if (!s->http || !s->scratch) return fprintf(stderr, "sov serve: cannot start libevent\n"), 1;
    /* bodies up to twice the limit are read and answered with a JSON 413; beyond that
     * libevent refuses them itself (after the headers, with its own 413 page) */
    evhttp_set_max_body_size(s->http, (ev_ssize_t)(s->p.max_body * 2 + 1024));
    evhttp_set_max_headers_size(s->http, 64 * 1024);
    evhttp_set_timeout(s->http, s->p.http_timeout_s);
    evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PATCH);
    evhttp_set_gencb(s->http, on_request_audited, s);
    if (s->p.tls) evhttp_set_bevcb(s->http, tls_bev_new, s->p.tls);
    s->sock = evhttp_bind_socket_with_handle(s->http, s->p.host, (ev_uint16_t)s->p.port);
    if (!s->sock) {
        fprintf(stderr, "sov serve: cannot listen on %s:%d: %s\n", s->p.host, s->p.port, strerror(errno));
        return 1;
    }
    s->wake_ev = event_new(s->base, s->pipe_fd[0], EV_READ | EV_PERSIST, on_wake, s);
    s->sigterm_ev = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sigint_ev = evsignal_new(s->base, SIGINT, on_signal, s);
    s->tick_ev = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    if (!s->wake_ev || !s->sigterm_ev || !s->sigint_ev || !s->tick_ev)
        return fprintf(stderr, "sov serve: cannot create events\n"), 1;
    event_add(s->wake_ev, NULL);
    event_add(s->sigterm_ev, NULL);
    event_add(s->sigint_ev, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Everything is open (listening socket, store, model, threads): lock the process down and
 * say what is in force, loudly when egress stays allowed. */
static int lock_down(server *s, const sandbox_params *sp) {
    if (sandbox_lockdown(sp, &s->sandbox) != SOV_OK) {
        fprintf(stderr, "sov serve: %s\n", sov_last_error());
        return 1;
    }
    if (s->sandbox.egress_locked)
        fprintf(stderr, "sov serve: sandbox: %s: %s\n", s->sandbox.summary, s->sandbox.detail);
    else
        fprintf(stderr, "sov serve: WARNING: %s: outbound connections are possible. sandbox: %s: %s\n",
                sp->allow_egress ? "EGRESS IS ALLOWED (--allow-egress)" : "EGRESS IS ONLY PARTLY LOCKED",
                s->sandbox.summary, s->sandbox.detail);
    return 0;
}

static int bound_port(server *s) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    const evutil_socket_t fd = evhttp_bound_socket_get_fd(s->sock);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return s->p.port;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return s->p.port;
}

int server_run(const sov_model *model, sov_context *ctx, const server_params *p) {
    server *s = calloc(1, sizeof *s);
    if (!s) return fprintf(stderr, "sov serve: out of memory\n"), 1;
    s->p = *p;
    s->policy = p->data_policy ? *p->data_policy : policy_default();
    s->tenants = p->tenants;
    s->auth_was_required = s->tenants && tenants_auth_required(s->tenants);
    s->model = model;
    s->vocab = sov_model_vocab(model);
    /* how the model writes reasoning and tool calls, from the template in use */
    size_t tmpl_len = 0;
    const char *tmpl = p->chat_template ? sov_chat_template_source(p->chat_template, &tmpl_len)
                                        : tok_vocab_chat_template(s->vocab, &tmpl_len);
    s->reply_style = reply_detect(tmpl, tmpl_len);
    if (s->reply_style.format != REPLY_PLAIN || s->reply_style.think_tags)
        fprintf(stderr, "sov serve: chat replies: %s%s%s%s\n",
                s->reply_style.format != REPLY_PLAIN ? "tool calls in " : "",
                s->reply_style.format != REPLY_PLAIN ? reply_format_name(s->reply_style.format) : "",
                s->reply_style.format != REPLY_PLAIN ? " syntax" : "",
                s->reply_style.think_tags ? (s->reply_style.format != REPLY_PLAIN ? ", <think> reasoning"
                                                                                  : "<think> reasoning")
                                          : "");
    s->pipe_fd[0] = s->pipe_fd[1] = -1;
    sov_model_get_info(model, &s->info);
    s->isa = sov_context_isa(ctx);
    s->threads = sov_context_threads(ctx);
    s->started = sov_now_s();
    s->audit = s->tenants && p->audit_node;
    s->au_cfg = (srv_audit_cfg){.node = p->audit_node,
                                .model = p->model_id,
                                .model_sha256 = p->model_sha256 ? p->model_sha256 : "",
                                .model_signer = p->model_signer ? p->model_signer : "",
                                .policy = p->data_policy,
                                /* the redactor sees the completion whole: a finding may span deltas */
                                .whole_completion = p->data_policy && p->data_policy->redact != 0};
    int rc = start(s);
    const admin_env ae = {.tenants = s->tenants,
                          .audit = s->audit ? &s->au_cfg : NULL,
                          .srv = s,
                          .authenticate = admin_auth_cb,
                          .counted = admin_count_cb,
                          .poll_keys = admin_poll_cb};
    if (!rc && !(s->admin = admin_new(&ae))) rc = (fprintf(stderr, "sov serve: out of memory\n"), 1);
    if (!rc) {
        const sched_params sp = {.policy = p->policy,
                                 .n_parallel = p->n_parallel,
                                 .n_batch = p->n_batch,
                                 .max_queue = p->max_queue,
                                 .n_ctx = p->n_ctx,
                                 .notify = notify,
                                 .notify_user = s,
                                 .meter = &s->meter,
                                 .kv_bytes_per_pos = p->kv_bytes_per_pos};
        const energy_params ep = {p->cpu_watts, p->dram_pj_per_byte};
        energy_meter_init(&s->meter, &ep, false);
        if (sched_new(ctx, model, &sp, &s->sched) != SOV_OK) {
            fprintf(stderr, "sov serve: %s\n", sov_last_error());
            rc = 1;
        }
    }
    if (!rc && s->tenants) tenants_set_notify(s->tenants, notify, s);
    /* the ready file is opened before the lockdown, which leaves its folder unwritable */
    FILE *ready = !rc && p->ready_file ? fopen(p->ready_file, "w") : NULL;
    if (!rc && p->sandbox) rc = lock_down(s, p->sandbox);
    if (!rc) {
        const int port = bound_port(s);
        printf("sov serve: listening on %s://%s:%d/v1  (model '%s', %d parallel, context %d, %d KV blocks "
               "of %d)\n",
               p->tls ? "https" : "http", p->host, port, p->model_id, p->n_parallel, p->n_ctx,
               sov_kv_blocks_total(ctx), sov_kv_block_size(ctx));
        fflush(stdout);
        if (ready) {
            fprintf(ready, "%s %d\n", p->host, port);
            fclose(ready);
            ready = NULL;
        }
        event_base_dispatch(s->base);
        fprintf(stderr, "sov serve: stopped\n");
    }
    if (ready) fclose(ready);
    /* The loop ends when no request is left; if something else ended it, the rest end
     * here: no close callback into a freed hreq when evhttp_free closes the connections
     * (libevent frees its requests with them), reservations still with the store worker
     * are waited for, the engine ends what it has, and everything is settled. */
    for (hreq *h = s->live; h; h = h->next) {
        stop_watching(h);
        h->req = NULL;
    }
    for (int i = 0; i < 1000 && any_reserving(s); i++) {
        take_reservations(s);
        const struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 1000 && any_auditing(s); i++) { /* records the worker still writes */
        take_audits(s);
        const struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    admin_free(s->admin); /* jobs still with the store worker: waited for, not answered */
    if (s->tenants) tenants_set_notify(s->tenants, NULL, NULL);
    sched_free(s->sched);
    energy_meter_close(&s->meter);
    while (s->live) {
        hreq *h = s->live;
        if (h->reserving || h->auditing) { /* the store never answered: the worker still points at it */
            s->live = h->next;
            continue;
        }
        settle(s, h, h->submitted, NULL);
        hreq_free(h);
    }
    tenant_counts_free(&s->tcounts);
    while (s->flushing) { /* not written in time: evhttp_free closes these connections */
        evhttp_connection_set_closecb(s->flushing->evcon, NULL, NULL);
        flusher_free(s->flushing);
    }
    if (s->wake_ev) event_free(s->wake_ev);
    if (s->sigterm_ev) event_free(s->sigterm_ev);
    if (s->sigint_ev) event_free(s->sigint_ev);
    if (s->tick_ev) event_free(s->tick_ev);
    if (s->scratch) evbuffer_free(s->scratch);
    if (s->http) evhttp_free(s->http);
    if (s->base) event_base_free(s->base);
    for (int i = 0; i < 2; i++)
        if (s->pipe_fd[i] >= 0) close(s->pipe_fd[i]);
    free(s);
    return rc;
}
