/* energy.h - joules per engine step, and per request (docs/ENERGY.md).
 *
 * Two sources, and every figure says which it came from:
 *   rapl       the kernel's powercap counters (/sys/class/powercap/intel-rapl:*; AMD CPUs
 *              expose the same tree): every package domain plus each package's "dram"
 *              sub-domain, energy_uj read before and after a step, wrap-around at
 *              max_energy_range_uj handled. The root can be moved with SOV_POWERCAP_ROOT
 *              (tests point it at a fake tree).
 *   estimated  where no counter is readable (most VMs): the process's CPU time during the
 *              step x the power of one busy core (--cpu-watts) + the bytes the step read
 *              from DRAM (weights once, plus the KV cache of every sequence in the batch)
 *              x an energy per byte. An estimate, and labelled so wherever it appears.
 *
 * Attribution (energy_token_work, energy_split): a step's joules are split over the
 * requests in its batch in proportion to the floating-point work of their tokens in the
 * step. A token's work depends only on that token (its position and whether it needs the
 * LM head), never on who else is in the batch:
 *   work(token at position p) = 2 * (n_params - n_vocab * n_embd)          matmuls below the head
 *                             + 4 * n_layer * n_head * head_dim * (p + 1)  attention over p+1 keys
 *                             + (logits ? 2 * n_vocab * n_embd : 0)        the LM head
 * so a decode token (always needs logits) costs more than a prompt token at the same
 * position (only a prompt's last token runs the head), and late tokens cost more than
 * early ones. The split sums to the step's joules exactly (up to rounding). */
#ifndef SOV_ENERGY_ENERGY_H
#define SOV_ENERGY_ENERGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

typedef enum energy_source {
    ENERGY_ESTIMATED = 0, /* CPU time x watts + DRAM bytes x pJ/byte */
    ENERGY_RAPL = 1,      /* powercap counters */
} energy_source;

/* "estimated" or "rapl" (the label of every energy figure sov shows). */
const char *energy_source_name(energy_source s);

/* Documented defaults (docs/ENERGY.md says where they come from). */
#define ENERGY_DEFAULT_CPU_WATTS 10.0       /* W per busy core: a 65 W desktop TDP / 6 cores,
                                               or a 205 W server TDP / 20 cores, rounded */
#define ENERGY_DEFAULT_DRAM_PJ_PER_BYTE 100.0 /* DDR4 read, device + interface (~12 pJ/bit) */

/* ---- powercap (RAPL) ---- */

enum { ENERGY_MAX_DOMAINS = 16 };

typedef struct energy_domain {
    char path[512];        /* .../energy_uj */
    int fd;                /* open on path (kept open: the sandbox forbids opening it later) */
    char name[32];         /* "package-0", "dram", ... */
    uint64_t max_range_uj; /* the counter wraps to 0 after this value */
    uint64_t last_uj;      /* the last reading */
} energy_domain;

typedef struct energy_rapl {
    energy_domain d[ENERGY_MAX_DOMAINS];
    int n;
    char root[448];
} energy_rapl;

/* The powercap root: SOV_POWERCAP_ROOT when set, else /sys/class/powercap. */
const char *energy_powercap_root(void);

/* Finds the package domains (intel-rapl:N) and their dram sub-domains (intel-rapl:N:M
 * named "dram"; core/uncore sub-domains are inside the package figure and psys covers the
 * whole platform, so both are left out) under root (NULL: energy_powercap_root()) and
 * reads each once. Errors: SOV_ERR_IO when there is no readable package domain
 * (sov_last_error() says why: no tree, or energy_uj not readable, as for non-root users
 * on kernels since 5.10). */
sov_status energy_rapl_open(const char *root, energy_rapl *out);

/* Closes the counters' files. */
void energy_rapl_close(energy_rapl *r);

/* Parses a powercap value as sysfs writes it: decimal digits, maybe one newline, within
 * len bytes (no NUL needed). False for anything else (a sign, other text, overflow). */
bool energy_parse_uj(const char *buf, size_t len, uint64_t *out);

/* Microjoules a counter advanced from prev to now, wrapping at max_range (the counter
 * runs 0..max_range then restarts at 0). */
uint64_t energy_counter_delta(uint64_t prev, uint64_t now, uint64_t max_range);

/* Joules since the last reading, summed over the domains (and updates the readings).
 * Errors: SOV_ERR_IO when a counter can no longer be read. */
sov_status energy_rapl_read(energy_rapl *r, double *joules);

/* ---- the estimate ---- */

typedef struct energy_params {
    double cpu_watts;         /* W per busy core (<= 0: the default) */
    double dram_pj_per_byte;  /* pJ per byte read from DRAM (<= 0: the default) */
} energy_params;

/* Joules of cpu_seconds of busy core time and bytes read from DRAM. */
double energy_estimate(const energy_params *p, double cpu_seconds, double bytes);

/* CPU time of the whole process (every thread), seconds. */
double energy_process_cpu_s(void);

/* ---- a meter: one source, read around each step ---- */

typedef struct energy_meter {
    energy_source source;
    energy_params p;
    energy_rapl rapl;
    double cpu_s; /* estimated: CPU time at energy_meter_begin */
} energy_meter;

/* Uses the powercap counters when they are readable (and force_estimate is false), else
 * the estimate with p. Never fails. */
void energy_meter_init(energy_meter *m, const energy_params *p, bool force_estimate);
void energy_meter_close(energy_meter *m);
/* Marks the start of a step. */
void energy_meter_begin(energy_meter *m);
/* Joules since energy_meter_begin; bytes_read is what the step read from DRAM (used by
 * the estimate). A counter that stops being readable gives 0 for the step. */
double energy_meter_end(energy_meter *m, double bytes_read);

/* ---- attribution ---- */

/* The model's figures the work of a token needs (from sov_model_info). */
typedef struct energy_model {
    double matmul_flops;   /* 2 * (n_params - n_vocab * n_embd), at least 1 */
    double attn_flops;     /* 4 * n_layer * n_head * head_dim per key attended */
    double head_flops;     /* 2 * n_vocab * n_embd */
    double weight_bytes;   /* read once per step */
    double kv_bytes_per_pos; /* keys + values of one position, all layers */
} energy_model;

/* kv_bytes_per_pos: keys and values of one position in all layers as the cache stores
 * them (its type: F16, F32, Q8_0, Q4_0); <= 0: an F16 cache. */
void energy_model_init(energy_model *em, const sov_model_info *info, double kv_bytes_per_pos);

/* The work (FLOPs) of one token at position pos; logits: it runs the LM head. */
double energy_token_work(const energy_model *em, int32_t pos, bool logits);

/* Splits joules over n shares in proportion to work[i] (out[i]); equal shares when the
 * work sums to 0. The outputs sum to joules. */
void energy_split(double joules, const double *work, int n, double *out);

#endif
