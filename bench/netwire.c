/* netwire: the emulated network of bench/netns.sh — a switch with a fixed one-way delay.
 *
 * Usage: netwire DELAY_US NETNS...   (run as root; stops on SIGTERM/SIGINT)
 *
 * For each network namespace named (as under /run/netns) it enters the namespace, opens a
 * TUN device "sovw0" there and comes back; the harness then gives namespace i the address
 * 10.77.0.(i+1)/24 on it and a tbf rate limit on its egress. Every IPv4 packet a namespace
 * sends is read here, held DELAY_US microseconds and written into the TUN device of the
 * namespace its destination address names — one switch hop with delay D, so a round trip
 * between two namespaces takes 2 D plus serialisation. Other packets (IPv6, unknown
 * destinations) are dropped, as a switch drops what it cannot forward.
 *
 * Why not `tc qdisc ... netem delay`: kernels built without CONFIG_NET_SCH_NETEM (this
 * project's test machines) have no delay qdisc; this program is the delay line, the kernel's
 * tbf still shapes the rate. The devices vanish with the process, so a killed harness
 * leaves no links behind (the namespaces themselves are removed by netns.sh's trap).
 *
 * Prints "ready" on stdout once every device exists. Packets are held in one FIFO per
 * destination (a constant delay keeps order); at most WIRE_MAX_BYTES are in flight, beyond
 * that packets are dropped (TCP's congestion control sees a full queue).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

enum { WIRE_MAX_NS = 64, WIRE_MTU_MAX = 65536 };
#define WIRE_MAX_BYTES ((size_t)256 << 20) /* bytes held in all queues together */

typedef struct packet {
    struct packet *next;
    int64_t due_ns; /* CLOCK_MONOTONIC time at which it leaves the wire */
    size_t len;
    unsigned char data[]; /* (len) the IPv4 packet as read from the sender's TUN */
} packet;

typedef struct {
    packet *head, *tail; /* FIFO of packets bound for this namespace */
} queue;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { stop_flag = sig; }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Opens TUN device "sovw0" inside the namespace /run/netns/NAME; returns its fd or -1. */
static int open_tun_in(const char *name, int home_ns) {
    char path[512];
    snprintf(path, sizeof path, "/run/netns/%s", name);
    const int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
        fprintf(stderr, "netwire: cannot enter network namespace %s: %s\n", name, strerror(errno));
        if (ns >= 0) close(ns);
        return -1;
    }
    close(ns);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "sovw0");
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) != 0) {
        fprintf(stderr, "netwire: cannot create TUN device in %s: %s\n", name, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    if (setns(home_ns, CLONE_NEWNET) != 0) {
        fprintf(stderr, "netwire: cannot return to the first namespace: %s\n", strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* Destination namespace of an IPv4 packet: 10.77.0.(i+1) is namespace i; -1 otherwise. */
static int destination(const unsigned char *p, size_t len, int n) {
    if (len < 20 || (p[0] >> 4) != 4) return -1;
    if (p[16] != 10 || p[17] != 77 || p[18] != 0) return -1;
    const int i = (int)p[19] - 1;
    return i >= 0 && i < n ? i : -1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: netwire DELAY_US NETNS...\n");
        return 2;
    }
    char *end = NULL;
    const long delay_us = strtol(argv[1], &end, 10);
    const int n = argc - 2;
    if (!end || *end || delay_us < 0 || delay_us > 10000000 || n > WIRE_MAX_NS) {
        fprintf(stderr,
                "netwire: bad delay '%s' (microseconds, 0..10000000) or more than %d "
                "namespaces\n",
                argv[1], WIRE_MAX_NS);
        return 2;
    }
    const int64_t delay_ns = (int64_t)delay_us * 1000;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake at the due time, not 50 µs later */
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    const int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) {
        fprintf(stderr, "netwire: cannot open own network namespace: %s\n", strerror(errno));
        return 1;
    }
    struct pollfd pfd[WIRE_MAX_NS];
    queue q[WIRE_MAX_NS];
    memset(q, 0, sizeof q);
    for (int i = 0; i < n; i++) {
        pfd[i].fd = open_tun_in(argv[2 + i], home);
        pfd[i].events = POLLIN;
        if (pfd[i].fd < 0) return 1;
    }
    close(home);
    printf("ready\n");
    fflush(stdout);

    unsigned char *buf = malloc(WIRE_MTU_MAX);
    if (!buf) return 1;
    size_t held = 0;
    unsigned long long dropped = 0;
    while (!stop_flag) {
        /* 1. deliver every packet whose time has come */
        int64_t now = now_ns(), next_due = INT64_MAX;
        for (int i = 0; i < n; i++) {
            while (q[i].head && q[i].head->due_ns <= now) {
                packet *p = q[i].head;
                if (write(pfd[i].fd, p->data, p->len) < 0 && errno != EAGAIN) dropped++;
                q[i].head = p->next;
                if (!q[i].head) q[i].tail = NULL;
                held -= p->len;
                free(p);
            }
            if (q[i].head && q[i].head->due_ns < next_due) next_due = q[i].head->due_ns;
        }
        /* 2. wait for a packet or the next due time, whichever comes first */
        struct timespec ts, *tsp = NULL;
        if (next_due != INT64_MAX) {
            const int64_t wait = next_due > now ? next_due - now : 0;
            ts.tv_sec = (time_t)(wait / 1000000000);
            ts.tv_nsec = (long)(wait % 1000000000);
            tsp = &ts;
        }
        const int ready = ppoll(pfd, (nfds_t)n, tsp, NULL);
        if (ready < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "netwire: poll: %s\n", strerror(errno));
            break;
        }
        /* 3. take in what the namespaces sent, stamped with its departure time */
        for (int i = 0; i < n && ready > 0; i++) {
            if (!(pfd[i].revents & POLLIN)) continue;
            for (;;) {
                const ssize_t len = read(pfd[i].fd, buf, WIRE_MTU_MAX);
                if (len <= 0) break;
                const int to = destination(buf, (size_t)len, n);
                if (to < 0 || held + (size_t)len > WIRE_MAX_BYTES) {
                    dropped += to >= 0;
                    continue;
                }
                packet *p = malloc(sizeof *p + (size_t)len);
                if (!p) {
                    dropped++;
                    continue;
                }
                p->next = NULL;
                p->due_ns = now_ns() + delay_ns;
                p->len = (size_t)len;
                memcpy(p->data, buf, (size_t)len);
                if (q[to].tail)
                    q[to].tail->next = p;
                else
                    q[to].head = p;
                q[to].tail = p;
                held += p->len;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        while (q[i].head) {
            packet *p = q[i].head;
            q[i].head = p->next;
            free(p);
        }
        close(pfd[i].fd);
    }
    free(buf);
    if (dropped) fprintf(stderr, "netwire: %llu packets dropped (queue full)\n", dropped);
    return 0;
}
