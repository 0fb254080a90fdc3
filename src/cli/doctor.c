/* doctor.c - `sov doctor`: checks the machine and the configuration `sov serve` would run
 * with, one line per check, OK / WARN / FAIL with what to do, and exits 0 (all OK), 1 (a
 * warning) or 2 (a failure); --json gives the same as one JSON object.
 *
 * Each check is a small function that fills one line; none changes anything (the store is
 * opened read-only, the port is bound and closed at once, the bandwidth buffer lives in a
 * child process). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "cli/cli.h"
#include "core/bandwidth.h"
#include "core/threadpool.h"
#include "energy/energy.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "sandbox/sandbox.h"
#include "sign/sign.h"
#include "store/store.h"

typedef enum level { LV_OK = 0, LV_WARN = 1, LV_FAIL = 2 } level;

enum { MAX_LINES = 24 };

typedef struct line {
    const char *check; /* a static name */
    level lv;
    char detail[320]; /* what was found */
    char fix[320];    /* what to do ("" when OK) */
} line;

typedef struct doctor {
    line l[MAX_LINES];
    int n;
    /* options */
    const char *model, *db, *state_dir, *trusted_keys, *host;
    long port, threads;
    bool bandwidth;
    double bw_gbs; /* measured (0: not) */
} doctor;

static line *add(doctor *d, const char *check, level lv, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static line *add(doctor *d, const char *check, level lv, const char *fix, const char *fmt, ...) {
    if (d->n == MAX_LINES) return &d->l[MAX_LINES - 1]; /* cannot happen: the checks are fixed */
    line *l = &d->l[d->n++];
    l->check = check;
    l->lv = lv;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->detail, sizeof l->detail, fmt, ap);
    va_end(ap);
    snprintf(l->fix, sizeof l->fix, "%s", fix ? fix : "");
    return l;
}

static bool read_small(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    const size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return true;
}

/* ---- checks ---- */

static void check_cpu(doctor *d) {
    const sov_kernels *k = sov_kernels_select();
    char feats[160] = "";
    sov_cpu_features(feats, sizeof feats); /* as the kernel dispatch sees them (cpuid + xgetbv) */
    if (strcmp(k->isa, "scalar") == 0)
        add(d, "cpu", LV_WARN, "a CPU with AVX2 (x86) or NEON (ARM) runs several times faster",
            "kernel table scalar (features:%s)", feats[0] ? feats : " none");
    else
        add(d, "cpu", LV_OK, NULL, "kernel table %s (features:%s)", k->isa, feats[0] ? feats : " none");
}

static void check_bandwidth(doctor *d) {
    const int threads = d->threads > 0 ? (int)d->threads : sov_physical_cores();
    if (!d->bandwidth) {
        add(d, "bandwidth", LV_OK, NULL, "not measured (--no-bandwidth)");
        return;
    }
    d->bw_gbs = sov_measure_read_bandwidth_isolated(threads, (size_t)256 << 20);
    if (d->bw_gbs <= 0)
        add(d, "bandwidth", LV_WARN, "free some memory and run again", "could not measure (out of memory?)");
    else
        add(d, "bandwidth", LV_OK, NULL, "%.1f GB/s read with %d threads", d->bw_gbs, threads);
}

/* Expected tokens/s: decode reads every weight once per token, so bandwidth / bytes per
 * token is its ceiling. Also the model's signature. */
static void check_model(doctor *d) {
    if (!d->model) {
        add(d, "model", LV_OK, NULL, "no model given (-m MODEL.gguf checks its speed and signature)");
        return;
    }
    sov_model *m = NULL;
    const sov_status st = sov_model_load(d->model, NULL, &m);
    if (st != SOV_OK) {
        add(d, "model", LV_FAIL, "give a readable GGUF model file", "%s: %s", d->model, sov_last_error());
        return;
    }
    sov_model_info info;
    sov_model_get_info(m, &info);
    const uint64_t bpt = sov_model_bytes_per_token(m);
    if (d->bw_gbs > 0)
        add(d, "model", LV_OK, NULL, "%s %s, %.1f MB read per token: expect at most %.1f tokens/s at %.1f GB/s",
            info.arch, info.weight_type, (double)bpt / 1e6, d->bw_gbs * 1e9 / (double)bpt, d->bw_gbs);
    else
        add(d, "model", LV_OK, NULL, "%s %s, %.1f MB read per token (bandwidth not measured: no tokens/s figure)",
            info.arch, info.weight_type, (double)bpt / 1e6);
    sov_model_free(m);
    /* the signature */
    char sig[1100];
    snprintf(sig, sizeof sig, "%s.sig", d->model);
    struct stat s;
    const bool has_sig = stat(sig, &s) == 0;
    if (!d->trusted_keys) {
        if (has_sig)
            add(d, "signature", LV_WARN, "give --trusted-keys DIR to check it (docs/SIGNING.md)",
                "%s exists but is not checked", sig);
        else
            add(d, "signature", LV_WARN, "sign it: sov model sign (docs/SIGNING.md)", "the model is unsigned");
        return;
    }
    sign_trust *trust = NULL;
    if (sign_trust_load_dir(d->trusted_keys, &trust) != SOV_OK) {
        add(d, "signature", LV_FAIL, "give a folder of *.pub keys", "--trusted-keys %s: %s", d->trusted_keys,
            sov_last_error());
        return;
    }
    sign_record rec;
    char why[256] = "", hex[65];
    uint64_t size = 0;
    sign_verdict v = sign_check_before_load(trust, d->model, NULL, &rec, why, sizeof why);
    if (v == SIGN_OK) {
        if (sign_file_sha256(d->model, hex, &size) != SOV_OK) {
            v = SIGN_ERROR;
            snprintf(why, sizeof why, "cannot hash the file: %s", sov_last_error());
        } else {
            v = sign_check_after_load(&rec, d->model, hex, size, why, sizeof why);
        }
    }
    sign_trust_free(trust);
    if (v == SIGN_OK)
        add(d, "signature", LV_OK, NULL, "signed by trusted key %s", rec.key_id);
    else
        add(d, "signature", LV_FAIL, "sov serve --trusted-keys refuses it: sign it again or find the original",
            "%s", why[0] ? why : sign_verdict_name(v));
}

static void check_hugepages(doctor *d) {
    char v[128];
    if (!read_small("/sys/kernel/mm/transparent_hugepage/enabled", v, sizeof v)) {
        add(d, "hugepages", LV_WARN, "a kernel with transparent huge pages cuts TLB misses on large models",
            "transparent huge pages unavailable");
        return;
    }
    if (strstr(v, "[never]"))
        add(d, "hugepages", LV_WARN, "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
            "transparent huge pages off (%s)", v);
    else
        add(d, "hugepages", LV_OK, NULL, "transparent huge pages: %s", v);
}

static void check_memlock(doctor *d) {
    struct rlimit r;
    if (getrlimit(RLIMIT_MEMLOCK, &r) != 0) {
        add(d, "memlock", LV_WARN, NULL, "cannot read RLIMIT_MEMLOCK: %s", strerror(errno));
        return;
    }
    if (r.rlim_cur == RLIM_INFINITY) {
        add(d, "memlock", LV_OK, NULL, "RLIMIT_MEMLOCK unlimited: --mlock can keep weights out of swap");
        return;
    }
    struct stat s;
    const double need = d->model && stat(d->model, &s) == 0 ? (double)s.st_size : 0;
    if (need > 0 && (double)r.rlim_cur < need)
        add(d, "memlock", LV_WARN,
            "for --mlock raise it (systemd LimitMEMLOCK=infinity, ulimit -l unlimited) or give CAP_IPC_LOCK",
            "RLIMIT_MEMLOCK %.1f MiB < the model's %.1f MiB: --mlock would fail", (double)r.rlim_cur / (1 << 20),
            need / (1 << 20));
    else
        add(d, "memlock", LV_OK, NULL, "RLIMIT_MEMLOCK %.1f MiB%s", (double)r.rlim_cur / (1 << 20),
            need > 0 ? " (enough for the model's weights)" : "");
}

static void check_sandbox(doctor *d) {
    char v[256];
    if (read_small("/proc/sys/kernel/seccomp/actions_avail", v, sizeof v) || prctl(PR_GET_SECCOMP) >= 0)
        add(d, "seccomp", LV_OK, NULL, "seccomp filters available: sov serve can refuse outbound connections");
    else
        add(d, "seccomp", LV_FAIL,
            "use a kernel with CONFIG_SECCOMP_FILTER; sov serve refuses to start without it unless --allow-egress",
            "seccomp unavailable");
    const int abi = sandbox_landlock_abi();
    if (abi > 0)
        add(d, "landlock", LV_OK, NULL, "Landlock ABI %d: file access can be restricted to the model and state", abi);
    else
        add(d, "landlock", LV_WARN, "boot with lsm=...,landlock (Linux >= 5.13) to confine file access",
            "Landlock unavailable: sov serve runs without file confinement");
}

static void check_power(doctor *d) {
    energy_rapl r;
    if (energy_rapl_open(NULL, &r) == SOV_OK) {
        char names[200] = "";
        for (int i = 0; i < r.n; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", r.d[i].name);
        add(d, "power", LV_OK, NULL, "RAPL counters readable (%s): energy figures are measured", names);
        energy_rapl_close(&r);
        return;
    }
    add(d, "power", LV_WARN, "calibrate --cpu-watts against a wall meter (docs/ENERGY.md)",
        "no readable power counters (%s): energy figures will be estimated", sov_last_error());
}

/* A file's mode: WARN/FAIL when others may read (or write) what must be private. */
static void check_private(doctor *d, const char *check, const char *path, bool must, const char *what) {
    struct stat s;
    if (stat(path, &s) != 0) {
        add(d, check, LV_OK, NULL, "%s %s does not exist yet (created 0600 on first use)", what, path);
        return;
    }
    const bool owner = s.st_uid == geteuid();
    const unsigned mode = (unsigned)s.st_mode & 0777;
    if ((mode & 077) || !owner) {
        char fix[320];
        snprintf(fix, sizeof fix, "chmod 600 %.200s%s", path, owner ? "" : " and chown it to the server's user");
        add(d, check, must ? LV_FAIL : LV_WARN, fix, "%s %s has mode %03o%s%s", what, path, mode,
            owner ? "" : ", owned by another user", must ? ": sov serve refuses it" : "");
        return;
    }
    add(d, check, LV_OK, NULL, "%s %s: mode %03o, owned by this user", what, path, mode);
}

static void check_state(doctor *d) {
    char dir[1024];
    const char *sd = cli_state_dir(d->db, d->state_dir, dir, sizeof dir);
    if (!sd) {
        add(d, "state-dir", LV_FAIL, "give --state-dir DIR", "no state folder: HOME is not set");
    } else {
        struct stat s;
        if (stat(sd, &s) != 0) {
            add(d, "state-dir", LV_OK, NULL, "%s does not exist yet (created 0700 on first use)", sd);
        } else if (!S_ISDIR(s.st_mode)) {
            add(d, "state-dir", LV_FAIL, "give --state-dir a folder", "%s is not a folder", sd);
        } else if ((s.st_mode & 022) || s.st_uid != geteuid()) {
            char fix[320];
            snprintf(fix, sizeof fix, "chmod 700 %.200s", sd);
            add(d, "state-dir", LV_WARN, fix, "%s has mode %03o%s: others may change the server's state", sd,
                (unsigned)s.st_mode & 0777, s.st_uid != geteuid() ? ", owned by another user" : "");
        } else if (access(sd, W_OK) != 0) {
            add(d, "state-dir", LV_FAIL, "make it writable by the server's user", "%s is not writable", sd);
        } else {
            add(d, "state-dir", LV_OK, NULL, "%s: mode %03o, writable", sd, (unsigned)s.st_mode & 0777);
        }
        char key[1100];
        snprintf(key, sizeof key, "%s/%s", sd, AUDIT_KEY_FILE);
        check_private(d, "audit-key", key, true, "audit signing key");
    }
    if (!d->db) {
        add(d, "database", LV_WARN, "give --db FILE or --db postgresql://... for API keys and the audit log",
            "no state database (--db): the server would be open to anyone, without an audit log");
        return;
    }
    const bool sqlite = strncmp(d->db, "postgresql://", 13) != 0 && strncmp(d->db, "postgres://", 11) != 0;
    if (sqlite) {
        struct stat s;
        if (stat(d->db, &s) != 0) {
            add(d, "database", LV_OK, NULL, "SQLite file %s does not exist yet (sov serve creates it)", d->db);
            return;
        }
        check_private(d, "database-file", d->db, false, "SQLite file");
    }
    store *st = NULL;
    const store_open_params p = {.read_only = true, .busy_timeout_ms = 2000};
    const sov_status rc = store_open(d->db, &p, &st);
    if (rc != SOV_OK) {
        add(d, "database", LV_FAIL, "check the path or URL, the credentials and that the server is up",
            "cannot open: %s", sov_last_error());
        return;
    }
    const int v = store_version(st), want = store_schema_version();
    if (v == want)
        add(d, "database", LV_OK, NULL, "%s reachable, schema version %d (current)", store_describe(st), v);
    else
        add(d, "database", LV_WARN, "sov serve migrates it at start (back it up first)",
            "%s reachable, schema version %d (this sov writes %d)", store_describe(st), v, want);
    store_close(st);
}

static void check_port(doctor *d) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%ld", d->port);
    const int gai = getaddrinfo(d->host, port, &hints, &res);
    if (gai != 0) {
        add(d, "port", LV_FAIL, "give --host an address of this machine", "cannot resolve %s: %s", d->host,
            gai_strerror(gai));
        return;
    }
    int err = 0;
    const int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        err = errno;
    } else {
        const int one = 1; /* as the server binds: a port in TIME_WAIT is free */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1) != 0) err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    if (err == EADDRINUSE)
        add(d, "port", LV_FAIL, "stop what listens there (ss -ltnp) or give --port another", "%s:%ld is in use",
            d->host, d->port);
    else if (err)
        add(d, "port", LV_FAIL, "a port below 1024 needs CAP_NET_BIND_SERVICE; or give --port another",
            "cannot listen on %s:%ld: %s", d->host, d->port, strerror(err));
    else
        add(d, "port", LV_OK, NULL, "%s:%ld is free", d->host, d->port);
}

/* ---- output ---- */

static const char *level_name(level lv) { return lv == LV_OK ? "OK" : lv == LV_WARN ? "WARN" : "FAIL"; }

static level worst(const doctor *d) {
    level w = LV_OK;
    for (int i = 0; i < d->n; i++)
        if (d->l[i].lv > w) w = d->l[i].lv;
    return w;
}

static void print_text(const doctor *d) {
    for (int i = 0; i < d->n; i++) {
        const line *l = &d->l[i];
        printf("%-4s  %-13s %s%s%s\n", level_name(l->lv), l->check, l->detail, l->fix[0] ? " -> " : "", l->fix);
    }
}

static int print_json(const doctor *d) {
    json_t *arr = json_array();
    for (int i = 0; i < d->n; i++) {
        const line *l = &d->l[i];
        json_array_append_new(arr, json_pack("{ss ss ss ss}", "check", l->check, "status", level_name(l->lv),
                                             "detail", l->detail, "fix", l->fix));
    }
    const level w = worst(d);
    json_t *o = json_pack("{so ss si}", "checks", arr, "status", level_name(w), "exit", (int)w);
    char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (!s) return cli_error("doctor", "out of memory");
    puts(s);
    free(s);
    return 0;
}

static void help(FILE *f) {
    fprintf(f,
            "usage: sov doctor [-m MODEL.gguf] [--db DB] [--state-dir DIR] [--trusted-keys DIR]\n"
            "                  [--host 127.0.0.1] [--port 8080] [-t THREADS] [--no-bandwidth] [--json]\n\n"
            "Checks this machine and the configuration sov serve would run with, one line each,\n"
            "OK / WARN / FAIL with what to do: CPU features and the kernel table that will run,\n"
            "memory bandwidth and the tokens/s to expect for -m, huge pages, RLIMIT_MEMLOCK,\n"
            "seccomp and Landlock, power counters (measured or estimated energy), the state\n"
            "folder, the audit key's and database's permissions, the state database and its\n"
            "schema version, the model's signature, and whether the port is free.\n"
            "Exit status: 0 all OK, 1 a warning, 2 a failure.\n\n"
            "  -m, --model FILE      the model to serve (speed estimate and signature)\n"
            "  --db, --database DB   state store: SQLite file or postgresql:// URL (or SOV_DB)\n"
            "  --state-dir DIR       the server's state folder (as sov serve takes it)\n"
            "  --trusted-keys DIR    check the model's signature against these keys\n"
            "  --host ADDR           address sov serve would listen on (default 127.0.0.1)\n"
            "  --port N              port it would listen on (default 8080)\n"
            "  -t, --threads N       threads for the bandwidth measurement (default: physical cores)\n"
            "  --no-bandwidth        skip the bandwidth measurement (about a second)\n"
            "  --json                one JSON object: {\"checks\": [...], \"status\", \"exit\"}\n");
}

int cmd_doctor(int argc, char **argv) {
    doctor d = {.host = "127.0.0.1", .port = 8080, .bandwidth = true};
    bool json = false, bad = false;
    d.db = getenv("SOV_DB");
    if (d.db && !*d.db) d.db = NULL;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            return 0;
        } else if (cli_opt_str(argc, argv, &i, "-m", &d.model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--model", &d.model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--db", &d.db, &bad) ||
                   cli_opt_str(argc, argv, &i, "--database", &d.db, &bad) ||
                   cli_opt_str(argc, argv, &i, "--state-dir", &d.state_dir, &bad) ||
                   cli_opt_str(argc, argv, &i, "--trusted-keys", &d.trusted_keys, &bad) ||
                   cli_opt_str(argc, argv, &i, "--host", &d.host, &bad) ||
                   cli_opt_int(argc, argv, &i, "--port", &d.port, &bad) ||
                   cli_opt_int(argc, argv, &i, "-t", &d.threads, &bad) ||
                   cli_opt_int(argc, argv, &i, "--threads", &d.threads, &bad)) {
        } else if (cli_flag(argv, &i, "--json")) {
            json = true;
        } else if (cli_flag(argv, &i, "--no-bandwidth")) {
            d.bandwidth = false;
        } else {
            cli_error("doctor", "unknown option '%s'; see sov doctor --help", argv[i]);
            return 2;
        }
    }
    if (bad) return 2;
    if (d.port < 1 || d.port > 65535) {
        cli_error("doctor", "--port must be 1..65535");
        return 2;
    }
    if (d.threads < 0 || d.threads > 1024) {
        cli_error("doctor", "-t must be 1..1024");
        return 2;
    }
    check_cpu(&d);
    check_bandwidth(&d);
    check_model(&d);
    check_hugepages(&d);
    check_memlock(&d);
    check_sandbox(&d);
    check_power(&d);
    check_state(&d);
    check_port(&d);
    if (json) {
        if (print_json(&d)) return 2;
    } else {
        print_text(&d);
    }
    return (int)worst(&d);
}
