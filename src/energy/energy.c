/* energy.c - powercap counters, the CPU-time estimate and the attribution rule (see
 * energy.h and docs/ENERGY.md).
 *
 * The powercap tree: each zone is a folder intel-rapl:N (a package) with sub-zones
 * intel-rapl:N:M (core, uncore, dram); each holds `name`, `energy_uj` (a counter in
 * microjoules that wraps to 0 after `max_energy_range_uj`). A package's figure already
 * contains its core and uncore sub-zones, not its DRAM, so sov sums packages + dram. */
#include "energy/energy.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"

const char *energy_source_name(energy_source s) { return s == ENERGY_RAPL ? "rapl" : "estimated"; }

const char *energy_powercap_root(void) {
    const char *e = getenv("SOV_POWERCAP_ROOT");
    return e && *e ? e : "/sys/class/powercap";
}

/* ---- powercap ---- */

bool energy_parse_uj(const char *buf, size_t len, uint64_t *out) {
    if (len > 0 && buf[len - 1] == '\n') len--;
    if (len == 0 || len > 20) return false; /* 2^64 has 20 digits */
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] < '0' || buf[i] > '9') return false;
        const uint64_t digit = (uint64_t)(buf[i] - '0');
        if (v > (UINT64_MAX - digit) / 10) return false;
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

static bool read_fd_u64(int fd, uint64_t *out) {
    char buf[32];
    const ssize_t n = pread(fd, buf, sizeof buf, 0);
    if (n <= 0 || (size_t)n == sizeof buf) return false; /* a counter is at most 21 bytes */
    return energy_parse_uj(buf, (size_t)n, out);
}

static bool read_u64(const char *path, uint64_t *out) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = read_fd_u64(fd, out);
    close(fd);
    return ok;
}

static bool read_name(const char *dir, char *out, size_t cap) {
    char path[700];
    snprintf(path, sizeof path, "%.600s/name", dir);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    const bool got = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (!got) return false;
    out[strcspn(out, "\n")] = '\0';
    return true;
}

/* "intel-rapl:N" (depth 1) or "intel-rapl:N:M" (depth 2); 0 for anything else. */
static int zone_depth(const char *name) {
    static const char prefix[] = "intel-rapl:";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0) return 0;
    int depth = 0;
    for (const char *p = name + sizeof prefix - 1; *p;) {
        if (*p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9') p++;
        depth++;
        if (*p == ':') {
            p++;
            if (!*p) return 0;
        } else if (*p) {
            return 0;
        }
    }
    return depth;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

sov_status energy_rapl_open(const char *root, energy_rapl *out) {
    memset(out, 0, sizeof *out);
    if (!root) root = energy_powercap_root();
    snprintf(out->root, sizeof out->root, "%s", root);
    DIR *d = opendir(root);
    if (!d) return sov_fail(SOV_ERR_IO, "energy: no powercap tree at %s (%s)", root, strerror(errno));
    char *names[64];
    int n_names = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n_names < 64) {
        if (zone_depth(e->d_name) == 0) continue;
        if (!(names[n_names] = strdup(e->d_name))) break;
        n_names++;
    }
    closedir(d);
    qsort(names, (size_t)n_names, sizeof *names, cmp_str); /* stable order: packages, then theirs */
    int unreadable = 0;
    for (int i = 0; i < n_names && out->n < ENERGY_MAX_DOMAINS; i++) {
        char dir[600], name[32] = "";
        snprintf(dir, sizeof dir, "%.448s/%.100s", root, names[i]);
        if (!read_name(dir, name, sizeof name)) continue;
        const int depth = zone_depth(names[i]);
        if (strcmp(name, "psys") == 0) continue;              /* the whole platform: double counts */
        if (depth == 2 && strcmp(name, "dram") != 0) continue; /* core/uncore: inside the package */
        energy_domain *dom = &out->d[out->n];
        snprintf(dom->path, sizeof dom->path, "%.490s/energy_uj", dir);
        snprintf(dom->name, sizeof dom->name, "%s", name);
        char range[700];
        snprintf(range, sizeof range, "%.600s/max_energy_range_uj", dir);
        dom->fd = open(dom->path, O_RDONLY | O_CLOEXEC);
        if (dom->fd < 0 || !read_fd_u64(dom->fd, &dom->last_uj) || !read_u64(range, &dom->max_range_uj) ||
            dom->max_range_uj == 0) {
            if (dom->fd >= 0) close(dom->fd);
            unreadable++;
            continue;
        }
        out->n++;
    }
    for (int i = 0; i < n_names; i++)
        free(names[i]);
    if (out->n == 0)
        return sov_fail(SOV_ERR_IO,
                        unreadable ? "energy: the RAPL counters under %s are not readable or malformed (root "
                                     "only since Linux 5.10: run as root or grant read access to energy_uj)"
                                   : "energy: no RAPL domain under %s",
                        root);
    return SOV_OK;
}

void energy_rapl_close(energy_rapl *r) {
    for (int i = 0; i < r->n; i++)
        if (r->d[i].fd >= 0) close(r->d[i].fd);
    r->n = 0;
}

uint64_t energy_counter_delta(uint64_t prev, uint64_t now, uint64_t max_range) {
    if (now >= prev) return now - prev;
    /* wrapped: from prev up to max_range, then 0 up to now */
    if (prev > max_range) return now; /* cannot happen with a sane counter */
    return (max_range - prev) + now;
}

sov_status energy_rapl_read(energy_rapl *r, double *joules) {
    uint64_t sum = 0;
    for (int i = 0; i < r->n; i++) {
        uint64_t now;
        if (!read_fd_u64(r->d[i].fd, &now))
            return sov_fail(SOV_ERR_IO, "energy: cannot read %s any more", r->d[i].path);
        sum += energy_counter_delta(r->d[i].last_uj, now, r->d[i].max_range_uj);
        r->d[i].last_uj = now;
    }
    *joules = (double)sum * 1e-6;
    return SOV_OK;
}

/* ---- the estimate ---- */

static double cpu_watts(const energy_params *p) { return p->cpu_watts > 0 ? p->cpu_watts : ENERGY_DEFAULT_CPU_WATTS; }
static double dram_pj(const energy_params *p) {
    return p->dram_pj_per_byte > 0 ? p->dram_pj_per_byte : ENERGY_DEFAULT_DRAM_PJ_PER_BYTE;
}

double energy_estimate(const energy_params *p, double cpu_seconds, double bytes) {
    return cpu_seconds * cpu_watts(p) + bytes * dram_pj(p) * 1e-12;
}

double energy_process_cpu_s(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the meter ---- */

void energy_meter_init(energy_meter *m, const energy_params *p, bool force_estimate) {
    memset(m, 0, sizeof *m);
    m->p = *p;
    m->p.cpu_watts = cpu_watts(p);
    m->p.dram_pj_per_byte = dram_pj(p);
    m->source = !force_estimate && energy_rapl_open(NULL, &m->rapl) == SOV_OK ? ENERGY_RAPL : ENERGY_ESTIMATED;
    sov_clear_error();
}

void energy_meter_close(energy_meter *m) {
    if (m->source == ENERGY_RAPL) energy_rapl_close(&m->rapl);
}

void energy_meter_begin(energy_meter *m) {
    if (m->source == ENERGY_RAPL) {
        double ignored;
        (void)energy_rapl_read(&m->rapl, &ignored); /* between steps: not any request's */
    } else {
        m->cpu_s = energy_process_cpu_s();
    }
}

double energy_meter_end(energy_meter *m, double bytes_read) {
    if (m->source == ENERGY_RAPL) {
        double j = 0;
        return energy_rapl_read(&m->rapl, &j) == SOV_OK ? j : 0.0;
    }
    const double cpu = energy_process_cpu_s() - m->cpu_s;
    return energy_estimate(&m->p, cpu > 0 ? cpu : 0, bytes_read);
}

/* ---- attribution ---- */

void energy_model_init(energy_model *em, const sov_model_info *info, double kv_bytes_per_pos) {
    const double head = (double)info->n_vocab * (double)info->n_embd;
    const double below = (double)info->n_params - head;
    em->matmul_flops = below > 0.5 ? 2 * below : 1;
    em->attn_flops = 4.0 * info->n_layer * info->n_head * info->head_dim;
    em->head_flops = 2 * head;
    em->weight_bytes = (double)info->weight_bytes;
    em->kv_bytes_per_pos = kv_bytes_per_pos > 0 ? kv_bytes_per_pos
                                                 : 2.0 * info->n_layer * info->n_head_kv * info->head_dim * 2;
}

double energy_token_work(const energy_model *em, int32_t pos, bool logits) {
    return em->matmul_flops + em->attn_flops * ((double)pos + 1) + (logits ? em->head_flops : 0);
}

void energy_split(double joules, const double *work, int n, double *out) {
    double total = 0;
    for (int i = 0; i < n; i++)
        total += work[i] > 0 ? work[i] : 0;
    double given = 0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        out[i] = total > 0 ? joules * (work[i] > 0 ? work[i] : 0) / total : joules / n;
        given += out[i];
        if (total <= 0 || work[i] > 0) last = i;
    }
    if (last >= 0) out[last] += joules - given; /* the rounding goes to one share, so the sum is exact */
}
