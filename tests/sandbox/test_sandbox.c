/* test_sandbox.c - the egress lockdown (src/sandbox) proved against the kernel, each case
 * in a child process (the lockdown cannot be undone): after sandbox_lockdown() no thread —
 * those started before it included — can create a socket, a TCP connect from a socket that
 * existed before is refused by port, a loopback listener of the test sees nothing, files
 * outside the model and the state folder cannot be read or written, io_uring, exec and
 * ptrace fail with an errno (never a kill); PostgreSQL's TCP port stays reachable and no
 * other; --allow-egress opens the network again and says so; without Landlock it says
 * "seccomp only". The real server machinery (server_run) is locked down while it serves:
 * a thread of the serving process tries to connect to the test's listener and gets EACCES
 * while completions still work. Also: the store URL's routes, and the malformed-URL corpus
 * (tests/sandbox/corpus, the seeds of fuzz/fuzz_sandbox_db.c). Only loopback is used. */
#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/synth.h"
#include "policy/policy.h"
#include "sandbox/sandbox.h"
#include "server/server.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_SANITIZER 1
#endif
#endif

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

static char g_dir[512];       /* this run's scratch folder */
static char g_state[600];     /* the state folder (writable under the lockdown) */
static char g_model[600];     /* a "model" file (readable) */
static char g_elsewhere[600]; /* a file outside both (unreachable) */
static int g_abi;             /* the kernel's Landlock ABI */

/* ---- processes, threads, sockets ---- */

typedef void (*child_fn)(void *arg);

/* Runs fn in a child process; true when none of its CHECKs failed. */
static bool in_child(child_fn fn, void *arg) {
    fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        test_failures_ = 0; /* the child's own verdict */
        fn(arg);
        fflush(stderr);
        _exit(test_failures_ ? 1 : 0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A thread started before the lockdown that runs jobs on request. */
typedef struct helper {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int (*job)(void *);
    void *arg;
    int result;
    int state; /* 0 idle, 1 job posted, 2 done, 3 quit */
} helper;

static void *helper_main(void *arg) {
    helper *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->state != 1 && h->state != 3)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->state == 3) break;
        pthread_mutex_unlock(&h->mu);
        const int r = h->job(h->arg);
        pthread_mutex_lock(&h->mu);
        h->result = r;
        h->state = 2;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static void helper_start(helper *h) {
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    CHECK_EQ(pthread_create(&h->thread, NULL, helper_main, h), 0);
}

/* Runs fn(arg) on the helper thread; its result. */
static int on_helper(helper *h, int (*fn)(void *), void *arg) {
    pthread_mutex_lock(&h->mu);
    h->job = fn;
    h->arg = arg;
    h->state = 1;
    pthread_cond_broadcast(&h->cv);
    while (h->state != 2)
        pthread_cond_wait(&h->cv, &h->mu);
    h->state = 0;
    const int r = h->result;
    pthread_mutex_unlock(&h->mu);
    return r;
}

static void helper_stop(helper *h) {
    pthread_mutex_lock(&h->mu);
    h->state = 3;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
}

/* A listener on 127.0.0.1 (port chosen by the kernel). */
static int listen_loopback(int *port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        fprintf(stderr, "cannot listen on loopback: %s\n", strerror(errno));
        exit(1);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Whether a connection reached the listener within ms (it is accepted and closed). */
static bool connection_arrived(int lfd, int ms) {
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0) return false;
    const int c = accept(lfd, NULL, NULL);
    if (c >= 0) close(c);
    return true;
}

/* connect() from fd to 127.0.0.1:port: 0 or errno. */
static int connect_fd(int fd, int port) {
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return connect(fd, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : errno;
}

/* A new TCP socket connected to 127.0.0.1:port: 0 or the errno of socket() or connect(). */
static int connect_new(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    const int r = connect_fd(fd, port);
    close(fd);
    return r;
}

static int job_connect(void *arg) { return connect_new(*(int *)arg); }

/* socket(family, type, protocol): 0 when it was created (and closed), else errno. */
static int try_socket(int family, int type, int protocol) {
    const int fd = socket(family, type, protocol);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

static int job_inet_socket(void *arg) {
    (void)arg;
    return try_socket(AF_INET, SOCK_STREAM, 0);
}

static int try_open(const char *path, int flags) {
    const int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

static int job_read_elsewhere(void *arg) {
    (void)arg;
    return try_open(g_elsewhere, O_RDONLY);
}

static int job_tid(void *arg) {
    (void)arg;
    return (int)syscall(SYS_gettid);
}

/* The Seccomp and NoNewPrivs lines of a thread's /proc status. */
static void thread_status(int tid, int *seccomp, int *nnp) {
    char path[96], line[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    *seccomp = *nnp = -1;
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Seccomp:", 8) == 0) *seccomp = atoi(line + 8);
        if (strncmp(line, "NoNewPrivs:", 11) == 0) *nnp = atoi(line + 11);
    }
    fclose(f);
}

static sandbox_params base_params(void) {
    sandbox_params p = {.state_dir = g_state, .n_read_paths = 1};
    p.read_paths[0] = g_model;
    return p;
}

/* ---- the cases ---- */

typedef struct net_case {
    int port;       /* a listener of the parent that must see nothing */
    int other_port; /* a second listener (PostgreSQL's stand-in) */
} net_case;

static void child_every_new_socket_is_refused(void *arg) {
    const net_case *nc = arg;
    helper h;
    helper_start(&h); /* started before the lockdown, like the server's threads */
    const int helper_tid = on_helper(&h, job_tid, NULL);
    sandbox_params p = base_params();
    sandbox_status s;
    CHECK_EQ(sandbox_lockdown(&p, &s), SOV_OK);
    CHECK(s.active && s.seccomp && s.egress_locked);
    CHECK_EQ(s.landlock_abi, g_abi);
    fprintf(stderr, "  in force: %s: %s\n", s.summary, s.detail);

    /* every family, from the calling thread and from one started before */
    CHECK_EQ(try_socket(AF_INET, SOCK_STREAM, 0), EACCES);
    CHECK_EQ(try_socket(AF_INET6, SOCK_STREAM, 0), EACCES);
    CHECK_EQ(try_socket(AF_INET, SOCK_DGRAM, 0), EACCES); /* DNS */
    CHECK_EQ(try_socket(AF_UNIX, SOCK_STREAM, 0), EACCES);
    CHECK_EQ(try_socket(AF_NETLINK, SOCK_RAW, 0), EACCES);
    CHECK_EQ(try_socket(AF_PACKET, SOCK_RAW, 0), EACCES);
    CHECK_EQ(try_socket(AF_VSOCK, SOCK_STREAM, 0), EACCES);
    errno = 0;
    CHECK_EQ(syscall(SYS_socket, (1L << 32) | AF_INET, SOCK_STREAM, 0), -1); /* garbage in the upper half */
    CHECK_EQ(errno, EACCES);
    CHECK_EQ(on_helper(&h, job_inet_socket, NULL), EACCES);
    CHECK_EQ(connect_new(nc->port), EACCES);
    int port = nc->port;
    CHECK_EQ(on_helper(&h, job_connect, &port), EACCES);

    /* what could carry a connection past the socket rules */
    errno = 0;
    CHECK_EQ(syscall(SYS_io_uring_setup, 8, calloc(1, 256)), -1);
    CHECK_EQ(errno, EPERM);
    int sp[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0); /* connected pairs stay allowed */
    CHECK_EQ(sendto(sp[0], "x", 1, MSG_FASTOPEN, NULL, 0), -1);
    CHECK_EQ(errno, EACCES);
    CHECK_EQ(send(sp[0], "x", 1, 0), 1);
    CHECK_EQ(listen(sp[0], 1), -1);
    CHECK_EQ(errno, EACCES);
    char *const argv[] = {"/bin/true", NULL};
    CHECK_EQ(execv("/bin/true", argv), -1);
    CHECK_EQ(errno, EPERM);
#ifndef TEST_SANITIZER
    CHECK_EQ(ptrace(PTRACE_TRACEME, 0, NULL, NULL), -1);
    CHECK_EQ(errno, EPERM);
#endif

    /* the process shows it, on every thread; no core dumps */
    CHECK_EQ(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
    int seccomp, nnp;
    thread_status((int)syscall(SYS_gettid), &seccomp, &nnp);
    CHECK(seccomp == 2 && nnp == 1);
    thread_status(helper_tid, &seccomp, &nnp);
    CHECK(seccomp == 2 && nnp == 1);

    /* files: the model and the state folder only (both threads) */
    if (g_abi > 0) {
        CHECK_EQ(try_open(g_model, O_RDONLY), 0);
        CHECK_EQ(try_open(g_model, O_WRONLY), EACCES);
        char path[700];
        snprintf(path, sizeof path, "%s/written", g_state);
        CHECK_EQ(try_open(path, O_WRONLY | O_CREAT | O_TRUNC), 0);
        CHECK_EQ(unlink(path), 0);
        CHECK_EQ(try_open(g_elsewhere, O_RDONLY), EACCES);
        CHECK_EQ(on_helper(&h, job_read_elsewhere, NULL), EACCES);
        snprintf(path, sizeof path, "%s/new-file", g_dir);
        CHECK_EQ(try_open(path, O_WRONLY | O_CREAT), EACCES);
        CHECK_EQ(try_open("/etc/passwd", O_RDONLY), EACCES);
    }
    helper_stop(&h);
}

static void every_new_socket_is_refused_on_every_thread(void) {
    net_case nc;
    const int lfd = listen_loopback(&nc.port);
    CHECK(in_child(child_every_new_socket_is_refused, &nc));
    CHECK(!connection_arrived(lfd, 200)); /* the listener saw nothing */
    close(lfd);
}

typedef struct old_socket_case {
    int port;
    bool allow_egress;
} old_socket_case;

/* A TCP socket created before the lockdown (seccomp cannot stop its connect): Landlock
 * refuses the port. */
static void child_old_socket(void *arg) {
    const old_socket_case *oc = arg;
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    sandbox_params p = base_params();
    p.allow_egress = oc->allow_egress;
    sandbox_status s;
    CHECK_EQ(sandbox_lockdown(&p, &s), SOV_OK);
    CHECK_EQ(connect_fd(fd, oc->port), oc->allow_egress ? 0 : EACCES);
    close(fd);
}

static void connect_from_an_old_socket_is_refused_and_nothing_arrives(void) {
    if (g_abi < 4) {
        fprintf(stderr, "  (Landlock ABI %d: no network rules on this kernel, case skipped)\n", g_abi);
        return;
    }
    old_socket_case oc = {.allow_egress = false};
    const int lfd = listen_loopback(&oc.port);
    CHECK(in_child(child_old_socket, &oc));
    CHECK(!connection_arrived(lfd, 200));
    oc.allow_egress = true; /* the same with --allow-egress connects */
    CHECK(in_child(child_old_socket, &oc));
    CHECK(connection_arrived(lfd, 2000));
    close(lfd);
}

static void child_postgres_port(void *arg) {
    const net_case *nc = arg;
    char db[128];
    snprintf(db, sizeof db, "postgresql://sov@127.0.0.1:%d/sov", nc->other_port);
    sandbox_params p = base_params();
    p.db = db;
    sandbox_status s;
    CHECK_EQ(sandbox_lockdown(&p, &s), SOV_OK);
    fprintf(stderr, "  in force: %s: %s\n", s.summary, s.detail);
    CHECK(s.egress_locked && s.landlock_net == (g_abi >= 4));
    CHECK_EQ(try_socket(AF_INET, SOCK_STREAM, 0), 0); /* libpq may reconnect */
    CHECK_EQ(try_socket(AF_INET, SOCK_STREAM, IPPROTO_TCP), 0);
    CHECK_EQ(try_socket(AF_INET6, SOCK_STREAM, 0), 0);
    CHECK_EQ(try_socket(AF_INET, SOCK_DGRAM, 0), EACCES); /* still no DNS */
    CHECK_EQ(try_socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP), EACCES);
    CHECK_EQ(try_socket(AF_INET, SOCK_RAW, IPPROTO_TCP), EACCES);
    CHECK_EQ(try_socket(AF_UNIX, SOCK_STREAM, 0), EACCES);
    CHECK_EQ(connect_new(nc->other_port), 0); /* PostgreSQL's port */
    if (g_abi >= 4) CHECK_EQ(connect_new(nc->port), EACCES);
}

static void postgres_tcp_port_is_the_only_destination(void) {
    net_case nc;
    const int lfd = listen_loopback(&nc.port), pg = listen_loopback(&nc.other_port);
    CHECK(in_child(child_postgres_port, &nc));
    CHECK(connection_arrived(pg, 2000));
    if (g_abi >= 4) CHECK(!connection_arrived(lfd, 200));
    close(lfd);
    close(pg);
}

static void child_named_unix_socket(void *arg) {
    const net_case *nc = arg;
    sandbox_params p = base_params();
    p.unix_sockets[0] = "/run/sov-helper.sock";
    p.n_unix_sockets = 1;
    sandbox_status s;
    CHECK_EQ(sandbox_lockdown(&p, &s), SOV_OK);
    CHECK(s.egress_locked && strstr(s.detail, "except Unix sockets") != NULL);
    CHECK_EQ(try_socket(AF_UNIX, SOCK_STREAM, 0), 0);
    CHECK_EQ(try_socket(AF_INET, SOCK_STREAM, 0), EACCES);
    CHECK_EQ(try_socket(AF_INET6, SOCK_DGRAM, 0), EACCES);
    CHECK_EQ(connect_new(nc->port), EACCES);
}

static void a_named_unix_socket_allows_unix_sockets_only(void) {
    net_case nc;
    const int lfd = listen_loopback(&nc.port);
    CHECK(in_child(child_named_unix_socket, &nc));
    CHECK(!connection_arrived(lfd, 200));
    close(lfd);
}

static void child_allow_egress(void *arg) {
    const net_case *nc = arg;
    sandbox_params p = base_params();
    p.allow_egress = true;
    sandbox_status s;
    CHECK_EQ(sandbox_lockdown(&p, &s), SOV_OK);
    CHECK(!s.egress_locked && s.seccomp && !s.landlock_net);
    CHECK(strncmp(s.summary, "egress ALLOWED", 14) == 0);
    CHECK(strstr(s.detail, "NOT refused") != NULL);
    char m[2048];
    sandbox_metrics(&s, m, sizeof m);
    CHECK(strstr(m, "\nsov_egress_locked 0\n") != NULL);
    CHECK_EQ(connect_new(nc->port), 0);
    CHECK_EQ(try_socket(AF_INET, SOCK_DGRAM, 0), 0);
    errno = 0; /* the rest of the table stays */
    CHECK_EQ(syscall(SYS_io_uring_setup, 8, calloc(1, 256)), -1);
    CHECK_EQ(errno, EPERM);
    if (g_abi > 0) CHECK_EQ(try_open(g_elsewhere, O_RDONLY), EACCES);
}

static void allow_egress_opens_the_network_and_says_so(void) {
    net_case nc;
    const int lfd = listen_loopback(&nc.port);
    CHECK(in_child(child_allow_egress, &nc));
    CHECK(connection_arrived(lfd, 2000));
    close(lfd);
}

static void child_without_landlock(void *arg) {
    (void)arg;
    sandbox_params p = base_params();
    p.landlock_abi_max = -1; /* as on a kernel without Landlock */
    sandbox_status s;
    CHECK_EQ(sandbox_lockdown(&p, &s), SOV_OK);
    CHECK_STREQ(s.summary, "seccomp only");
    CHECK(s.egress_locked && s.landlock_abi == 0 && !s.landlock_fs);
    CHECK(strstr(s.detail, "files: NOT restricted") != NULL);
    char m[2048];
    sandbox_metrics(&s, m, sizeof m);
    CHECK(strstr(m, "\nsov_egress_locked 1\n") && strstr(m, "\nsov_sandbox_landlock_abi 0\n"));
    CHECK_EQ(try_socket(AF_INET, SOCK_STREAM, 0), EACCES);
    CHECK_EQ(try_open(g_elsewhere, O_RDONLY), 0); /* what the fallback does not cover */
}

static void without_landlock_it_says_seccomp_only(void) { CHECK(in_child(child_without_landlock, NULL)); }

static void child_abi3(void *arg) {
    const net_case *nc = arg;
    char db[128];
    snprintf(db, sizeof db, "postgresql://sov@127.0.0.1:%d/sov", nc->other_port);
    sandbox_params p = base_params();
    p.db = db;
    p.landlock_abi_max = 3;
    sandbox_status s;
    CHECK_EQ(sandbox_lockdown(&p, &s), SOV_OK);
    CHECK_STREQ(s.summary, "egress PARTLY locked; seccomp+landlock(fs) ABI 3");
    CHECK(!s.egress_locked && strstr(s.detail, "NOT enforced") != NULL);
    CHECK_EQ(connect_new(nc->port), 0); /* without network rules any TCP port is reachable */
    CHECK_EQ(try_open(g_elsewhere, O_RDONLY), EACCES);
}

static void landlock_without_network_rules_says_the_port_is_not_enforced(void) {
    if (g_abi < 3) return;
    net_case nc;
    const int lfd = listen_loopback(&nc.port), pg = listen_loopback(&nc.other_port);
    CHECK(in_child(child_abi3, &nc));
    close(lfd);
    close(pg);
}

/* ---- the real server machinery ---- */

typedef struct serve_case {
    bool allow_egress;
    int port;   /* the test's listener: the target of the egress attempt */
    int go[2];  /* parent -> probe thread: try now */
    int res[2]; /* probe thread -> parent: the errno of the attempt */
    char ready[700];
    char model[700];
} serve_case;

/* A thread of the serving process, started before the lockdown: when told, it tries to
 * connect out, as a request that took over the process would. */
static void *probe_main(void *arg) {
    serve_case *c = arg;
    char b;
    if (read(c->go[0], &b, 1) != 1) return NULL;
    const int r = connect_new(c->port);
    if (write(c->res[1], &r, sizeof r) != (ssize_t)sizeof r) return NULL;
    return NULL;
}

static void child_serve(void *arg) {
    serve_case *c = arg;
    close(c->go[1]);
    close(c->res[0]);
    sov_model *m = NULL;
    sov_context *ctx = NULL;
    CHECK_EQ(sov_model_load(c->model, NULL, &m), SOV_OK);
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = 128;
    cp.n_seq_max = 2;
    cp.n_batch = 64;
    cp.n_threads = 2;
    if (!m || sov_context_new(m, &cp, &ctx) != SOV_OK) _exit(1);
    pthread_t probe;
    CHECK_EQ(pthread_create(&probe, NULL, probe_main, c), 0);
    sandbox_params sp = {.allow_egress = c->allow_egress, .state_dir = g_state, .n_read_paths = 1};
    sp.read_paths[0] = c->model;
    const sov_policy pol = policy_default();
    const server_params p = {.host = "127.0.0.1",
                             .port = 0,
                             .model_id = "synth",
                             .n_parallel = 2,
                             .n_batch = 64,
                             .max_queue = 8,
                             .n_ctx = 128,
                             .max_body = 1 << 20,
                             .request_timeout_s = 60,
                             .shutdown_timeout_s = 5,
                             .http_timeout_s = 30,
                             .ready_file = c->ready,
                             .data_policy = &pol,
                             .sandbox = &sp};
    CHECK_EQ(server_run(m, ctx, &p), 0);
    pthread_join(probe, NULL);
    sov_context_free(ctx);
    sov_model_free(m);
}

/* One HTTP/1.1 exchange with Connection: close; the response in buf. */
static size_t http(int port, const char *request, char *buf, size_t cap) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t n = 0;
    if (fd < 0 || connect_fd(fd, port) != 0) {
        if (fd >= 0) close(fd);
        buf[0] = '\0';
        return 0;
    }
    const size_t len = strlen(request);
    if (write(fd, request, len) == (ssize_t)len) {
        ssize_t r;
        while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
            n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    return n;
}

static int wait_ready(const char *path) {
    for (int i = 0; i < 6000; i++) {
        FILE *f = fopen(path, "r");
        int port = 0;
        char host[64];
        if (f) {
            const int got = fscanf(f, "%63s %d", host, &port);
            fclose(f);
            if (got == 2 && port > 0) return port;
        }
        usleep(10 * 1000);
    }
    return 0;
}

static void serve_case_run(bool allow_egress) {
    serve_case c = {.allow_egress = allow_egress};
    const int lfd = listen_loopback(&c.port);
    snprintf(c.model, sizeof c.model, "%s/synth.gguf", g_dir);
    snprintf(c.ready, sizeof c.ready, "%s/ready-%d", g_dir, (int)allow_egress);
    unlink(c.ready);
    CHECK(pipe(c.go) == 0 && pipe(c.res) == 0);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        test_failures_ = 0;
        child_serve(&c);
        fflush(stderr);
        _exit(test_failures_ ? 1 : 0);
    }
    close(c.go[0]);
    close(c.res[1]);
    const int port = wait_ready(c.ready);
    CHECK(port > 0);
    /* the serving process tries to connect out */
    CHECK_EQ(write(c.go[1], "g", 1), 1);
    struct pollfd pf = {.fd = c.res[0], .events = POLLIN};
    int err = -1;
    if (poll(&pf, 1, 10000) == 1 && read(c.res[0], &err, sizeof err) != (ssize_t)sizeof err) err = -1;
    if (allow_egress) {
        CHECK_EQ(err, 0);
        CHECK(connection_arrived(lfd, 2000));
    } else {
        CHECK_MSG(err == EACCES || err == EPERM, "the connect from the serving process: %s", strerror(err));
        CHECK(!connection_arrived(lfd, 200));
    }
    /* and it keeps serving */
    char buf[32768]; /* /metrics grows with every module's series */
    const char *body = "{\"prompt\": [1, 2, 3], \"max_tokens\": 4, \"temperature\": 0}";
    char req[512];
    snprintf(
        req, sizeof req,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        "Content-Length: %zu\r\n\r\n%s",
        strlen(body), body);
    http(port, req, buf, sizeof buf);
    CHECK_MSG(strncmp(buf, "HTTP/1.1 200", 12) == 0 && strstr(buf, "\"completion_tokens\":4"), "%.300s", buf);
    http(port, "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf, sizeof buf);
    CHECK_MSG(strstr(buf, allow_egress ? "\"egress_locked\":false" : "\"egress_locked\":true") != NULL,
              "%.300s", buf);
    http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf, sizeof buf);
    CHECK(strstr(buf, allow_egress ? "\nsov_egress_locked 0\n" : "\nsov_egress_locked 1\n") != NULL);
    close(c.go[1]);
    close(c.res[0]);
    kill(pid, SIGTERM);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(lfd);
}

static void server_refuses_egress_while_it_serves(void) { serve_case_run(false); }
static void server_with_allow_egress_connects(void) { serve_case_run(true); }

/* ---- the store's routes ---- */

static void routes_of_store_names(void) {
    sandbox_db_routes r;
    CHECK_EQ(sandbox_db_routes_of(NULL, &r), SOV_OK);
    CHECK(!r.postgres && !r.tcp && !r.unix_socket);
    CHECK_EQ(sandbox_db_routes_of("/var/lib/sov/state.db", &r), SOV_OK);
    CHECK(!r.postgres && !r.tcp && !r.unix_socket);
    CHECK_EQ(sandbox_db_routes_of("postgresql:///sov?host=/tmp/pg&port=5432&user=postgres", &r), SOV_OK);
    CHECK(r.postgres && r.unix_socket && !r.tcp && r.n_ports == 0);
    CHECK_EQ(sandbox_db_routes_of("postgresql:///sov", &r), SOV_OK); /* libpq's default socket folder */
    CHECK(r.unix_socket && !r.tcp);
    CHECK_EQ(sandbox_db_routes_of("postgresql://u:secret@127.0.0.1:6543/sov", &r), SOV_OK);
    CHECK(r.tcp && !r.unix_socket && !r.by_name && r.n_ports == 1 && r.ports[0] == 6543);
    CHECK_EQ(sandbox_db_routes_of("postgres://db.example/sov", &r), SOV_OK);
    CHECK(r.tcp && r.by_name && r.n_ports == 1 && r.ports[0] == 5432);
    CHECK_EQ(sandbox_db_routes_of("postgresql://h1:5433,h2:5434,h3:5433/sov", &r), SOV_OK);
    CHECK(r.n_ports == 2 && r.ports[0] == 5433 && r.ports[1] == 5434);
    CHECK_EQ(sandbox_db_routes_of("postgresql://[::1]:7000/sov", &r), SOV_OK);
    CHECK(r.tcp && !r.by_name && r.ports[0] == 7000);
    CHECK_EQ(sandbox_db_routes_of("postgresql:///sov?hostaddr=10.1.2.3&port=6000", &r), SOV_OK);
    CHECK(r.tcp && !r.by_name && r.ports[0] == 6000);
    CHECK_EQ(sandbox_db_routes_of("postgresql://db/sov?host=/run/pg,db2&port=5432", &r), SOV_OK);
    CHECK(r.unix_socket && r.tcp && r.by_name);
    CHECK_EQ(sandbox_db_routes_of("postgresql://db/sov?sslmode=verify-full&sslrootcert=/etc/sov/ca.pem", &r),
             SOV_OK);
    CHECK(r.n_files == 1 && strcmp(r.files[0], "/etc/sov/ca.pem") == 0);
    CHECK_EQ(sandbox_db_routes_of("postgresql://db:99999/sov", &r), SOV_ERR_ARG);
    CHECK_EQ(sandbox_db_routes_of("postgresql://db:http/sov", &r), SOV_ERR_ARG);
    CHECK_EQ(sandbox_db_routes_of("postgresql://db/sov?nosuchoption=1", &r), SOV_ERR_ARG);
    CHECK(strstr(sov_last_error(), "--db") != NULL);
}

/* Every file of the corpus: an answer (routes or SOV_ERR_ARG), never a crash. */
static void malformed_urls_are_refused_cleanly(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/sandbox/corpus",
             getenv("SOV_TEST_DATA") ? getenv("SOV_TEST_DATA") : "tests");
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "no corpus at %s", dir);
    if (!d) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[900], text[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        const size_t len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[len] = '\0';
        sandbox_db_routes r;
        const sov_status st = sandbox_db_routes_of(text, &r);
        CHECK_MSG(st == SOV_OK || st == SOV_ERR_ARG, "%s: %s", e->d_name, sov_strerror(st));
        CHECK(r.n_ports <= SANDBOX_MAX_PORTS);
        n++;
    }
    closedir(d);
    CHECK_MSG(n >= 10, "only %d corpus files", n);
}

/* ---- set-up ---- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void setup(void) {
    char base[400];
    test_tmp_path("", base, sizeof base);
    snprintf(g_dir, sizeof g_dir, "%ssandbox-%d", base, (int)getpid());
    mkdir(g_dir, 0700);
    snprintf(g_state, sizeof g_state, "%s/state", g_dir);
    mkdir(g_state, 0700);
    snprintf(g_model, sizeof g_model, "%s/model.bin", g_dir);
    write_file(g_model, "weights\n");
    char other[560];
    snprintf(other, sizeof other, "%s/elsewhere", g_dir);
    mkdir(other, 0700);
    snprintf(g_elsewhere, sizeof g_elsewhere, "%s/secret.txt", other);
    write_file(g_elsewhere, "not for the server\n");
    sov_synth_params sp = sov_synth_default_params();
    sp.n_embd = 64;
    sp.n_layer = 2;
    sp.n_head = 4;
    sp.n_head_kv = 2;
    sp.n_ff = 128;
    sp.n_vocab = 512;
    sp.n_ctx = 128;
    char model[700];
    snprintf(model, sizeof model, "%s/synth.gguf", g_dir);
    if (sov_synth_write(&sp, model, NULL, NULL) != SOV_OK) {
        fprintf(stderr, "cannot write the synthetic model: %s\n", sov_last_error());
        exit(1);
    }
    /* the routes must not depend on the environment of the test run */
    unsetenv("PGHOST");
    unsetenv("PGHOSTADDR");
    unsetenv("PGPORT");
    unsetenv("PGSERVICE");
    g_abi = sandbox_landlock_abi();
    fprintf(stderr, "kernel Landlock ABI: %d\n", g_abi);
}

int main(void) {
    setup();
    RUN(routes_of_store_names);
    RUN(malformed_urls_are_refused_cleanly);
    RUN(every_new_socket_is_refused_on_every_thread);
    RUN(connect_from_an_old_socket_is_refused_and_nothing_arrives);
    RUN(postgres_tcp_port_is_the_only_destination);
    RUN(a_named_unix_socket_allows_unix_sockets_only);
    RUN(allow_egress_opens_the_network_and_says_so);
    RUN(without_landlock_it_says_seccomp_only);
    RUN(landlock_without_network_rules_says_the_port_is_not_enforced);
    RUN(server_refuses_egress_while_it_serves);
    RUN(server_with_allow_egress_connects);
    TEST_EXIT();
}
