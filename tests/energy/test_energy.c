/* test_energy.c - src/energy: the powercap reader on a fake tree (SOV_POWERCAP_ROOT) across
 * a counter wrap, which domains it counts, unreadable and missing trees; the CPU-time
 * estimate against the process's own clock; the attribution rule; and, through the engine
 * loop on a small synthetic model, that the requests' joules sum to the engine's total. */
#include <pthread.h>
#include <unistd.h>

#include "core/util.h"
#include "energy/energy.h"
#include "model/synth.h"
#include "sched/sched.h"
#include "test.h"

/* ---- a fake powercap tree ---- */

static void put_file(const char *dir, const char *name, const char *text) {
    char path[900];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void zone(const char *root, const char *zone_name, const char *name, uint64_t uj, uint64_t max) {
    char dir[700], v[32];
    snprintf(dir, sizeof dir, "%s/%s", root, zone_name);
    mkdir(dir, 0755);
    put_file(dir, "name", name);
    snprintf(v, sizeof v, "%llu\n", (unsigned long long)uj);
    put_file(dir, "energy_uj", v);
    snprintf(v, sizeof v, "%llu\n", (unsigned long long)max);
    put_file(dir, "max_energy_range_uj", v);
}

static void set_uj(const char *root, const char *zone_name, uint64_t uj) {
    char dir[700], v[32];
    snprintf(dir, sizeof dir, "%s/%s", root, zone_name);
    snprintf(v, sizeof v, "%llu\n", (unsigned long long)uj);
    put_file(dir, "energy_uj", v);
}

static void fresh_dir(const char *name, char *out, size_t cap) {
    test_tmp_path(name, out, cap);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", out, out);
    CHECK(system(cmd) == 0);
}

static const uint64_t PKG_MAX = 262143328850ull; /* a real package's max_energy_range_uj */
static const uint64_t DRAM_MAX = 65712999613ull;

/* Two packages, a dram sub-zone, a core sub-zone (inside its package: not counted) and
 * psys (the whole platform: not counted). */
static void make_tree(const char *root) {
    zone(root, "intel-rapl:0", "package-0", PKG_MAX - 1500000, PKG_MAX); /* 1.5 J before the wrap */
    zone(root, "intel-rapl:0:0", "core", 1000, PKG_MAX);
    zone(root, "intel-rapl:0:1", "dram", 5000000, DRAM_MAX);
    zone(root, "intel-rapl:1", "package-1", 10000000, PKG_MAX);
    zone(root, "intel-rapl:2", "psys", 7, PKG_MAX);
    mkdir(root, 0755);
    char other[700];
    snprintf(other, sizeof other, "%s/intel-rapl-mmio:0", root); /* another tree's name: ignored */
    mkdir(other, 0755);
}

static void counter_delta_wraps(void) {
    CHECK_EQ(energy_counter_delta(100, 250, 1000), 150);
    CHECK_EQ(energy_counter_delta(900, 100, 1000), 200); /* 900..1000, then 0..100 */
    CHECK_EQ(energy_counter_delta(1000, 0, 1000), 0);
    CHECK_EQ(energy_counter_delta(5, 5, 1000), 0);
}

static void fake_tree_gives_joules_across_a_wrap(void) {
    char root[600];
    fresh_dir("powercap_wrap", root, sizeof root);
    make_tree(root);
    setenv("SOV_POWERCAP_ROOT", root, 1);
    CHECK_STREQ(energy_powercap_root(), root);
    energy_rapl r;
    CHECK(energy_rapl_open(NULL, &r) == SOV_OK);
    CHECK_EQ(r.n, 3); /* package-0, dram, package-1 */
    int pkg = 0, dram = 0;
    for (int i = 0; i < r.n; i++) {
        pkg += strncmp(r.d[i].name, "package-", 8) == 0;
        dram += strcmp(r.d[i].name, "dram") == 0;
        CHECK(strcmp(r.d[i].name, "core") != 0 && strcmp(r.d[i].name, "psys") != 0);
    }
    CHECK_EQ(pkg, 2);
    CHECK_EQ(dram, 1);
    /* package-0 wraps: 1.5 J up to the top, then 2.25 J from 0; dram +0.5 J; package-1
     * +3 J; core and psys move a lot but are not counted */
    set_uj(root, "intel-rapl:0", 2250000);
    set_uj(root, "intel-rapl:0:1", 5500000);
    set_uj(root, "intel-rapl:1", 13000000);
    set_uj(root, "intel-rapl:0:0", 900000000);
    set_uj(root, "intel-rapl:2", 900000000);
    double j = -1;
    CHECK(energy_rapl_read(&r, &j) == SOV_OK);
    CHECK_NEAR(j, 1.5 + 2.25 + 0.5 + 3.0, 1e-9);
    /* nothing moved: nothing spent */
    CHECK(energy_rapl_read(&r, &j) == SOV_OK);
    CHECK_NEAR(j, 0.0, 1e-12);
    /* the meter reads the same tree, one step at a time */
    energy_meter m;
    const energy_params p = {0, 0};
    energy_meter_init(&m, &p, false);
    CHECK_EQ(m.source, ENERGY_RAPL);
    CHECK_STREQ(energy_source_name(m.source), "rapl");
    energy_meter_begin(&m);
    set_uj(root, "intel-rapl:1", 13000000 + 420000);
    CHECK_NEAR(energy_meter_end(&m, 1e12), 0.42, 1e-9); /* bytes do not matter to a measurement */
    energy_meter_close(&m);
    energy_rapl_close(&r);
    unsetenv("SOV_POWERCAP_ROOT");
}

static void missing_or_unreadable_tree_falls_back_to_estimate(void) {
    char root[600];
    fresh_dir("powercap_empty", root, sizeof root);
    energy_rapl r;
    CHECK(energy_rapl_open(root, &r) == SOV_ERR_IO);
    CHECK(strstr(sov_last_error(), "no RAPL domain") != NULL);
    char missing[700];
    snprintf(missing, sizeof missing, "%s/nope", root);
    CHECK(energy_rapl_open(missing, &r) == SOV_ERR_IO);
    CHECK(strstr(sov_last_error(), "no powercap tree") != NULL);
    if (geteuid() != 0) { /* root reads anything: this case needs an ordinary user */
        zone(root, "intel-rapl:0", "package-0", 5, PKG_MAX);
        char path[800];
        snprintf(path, sizeof path, "%s/intel-rapl:0/energy_uj", root);
        CHECK(chmod(path, 0) == 0);
        CHECK(energy_rapl_open(root, &r) == SOV_ERR_IO);
        CHECK(strstr(sov_last_error(), "not readable") != NULL);
    }
    setenv("SOV_POWERCAP_ROOT", root, 1);
    energy_meter m;
    const energy_params p = {0, 0};
    energy_meter_init(&m, &p, false);
    CHECK_EQ(m.source, ENERGY_ESTIMATED);
    CHECK_STREQ(energy_source_name(m.source), "estimated");
    CHECK_NEAR(m.p.cpu_watts, ENERGY_DEFAULT_CPU_WATTS, 0);
    CHECK_NEAR(m.p.dram_pj_per_byte, ENERGY_DEFAULT_DRAM_PJ_PER_BYTE, 0);
    energy_meter_close(&m);
    unsetenv("SOV_POWERCAP_ROOT");
}

/* Every file of tests/energy/corpus (also the fuzz seeds): exactly the well-formed ones
 * parse, to the value written; a tree whose only counter is malformed has no domain. */
static void malformed_values_are_refused(void) {
    static const struct {
        const char *file;
        bool ok;
        uint64_t v;
    } cases[] = {{"max_range", true, 262143328850ull}, {"zero", true, 0}, {"u64_max", true, UINT64_MAX},
                 {"u64_overflow", false, 0},           {"negative", false, 0}, {"trailing_text", false, 0},
                 {"empty", false, 0},                  {"newline_only", false, 0}, {"two_newlines", false, 0},
                 {"leading_space", false, 0}};
    const char *data = getenv("SOV_TEST_DATA");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[700], buf[64];
        snprintf(path, sizeof path, "%s/energy/corpus/%s", data ? data : "tests", cases[i].file);
        FILE *f = fopen(path, "rb");
        CHECK_MSG(f != NULL, "%s", path);
        if (!f) continue;
        const size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        uint64_t v = 12345;
        const bool ok = energy_parse_uj(buf, n, &v);
        CHECK_MSG(ok == cases[i].ok, "%s", cases[i].file);
        if (ok && cases[i].ok) CHECK_MSG(v == cases[i].v, "%s", cases[i].file);
    }
    char root[600];
    fresh_dir("powercap_malformed", root, sizeof root);
    zone(root, "intel-rapl:0", "package-0", 1, PKG_MAX);
    set_uj(root, "intel-rapl:0", 0);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/intel-rapl:0", root);
    put_file(dir, "energy_uj", "12 joules\n");
    energy_rapl r;
    CHECK(energy_rapl_open(root, &r) == SOV_ERR_IO);
    CHECK(strstr(sov_last_error(), "malformed") != NULL);
    put_file(dir, "energy_uj", "12\n");
    put_file(dir, "max_energy_range_uj", "0\n"); /* a zero range cannot wrap: refused */
    CHECK(energy_rapl_open(root, &r) == SOV_ERR_IO);
}

/* ---- the estimate ---- */

static void estimate_is_cpu_time_times_watts_plus_dram(void) {
    const energy_params p = {12.0, 50.0};
    CHECK_NEAR(energy_estimate(&p, 2.0, 0), 24.0, 1e-12);
    CHECK_NEAR(energy_estimate(&p, 0, 1e9), 0.05, 1e-12); /* 1 GB x 50 pJ */
    energy_meter m;
    energy_meter_init(&m, &p, true);
    CHECK_EQ(m.source, ENERGY_ESTIMATED);
    const double c0 = energy_process_cpu_s();
    energy_meter_begin(&m);
    volatile double x = 0;
    while (energy_process_cpu_s() - c0 < 0.05) /* burn ~50 ms of CPU */
        for (int i = 0; i < 10000; i++) x += i * 1e-9;
    const double j = energy_meter_end(&m, 2e9);
    const double c1 = energy_process_cpu_s();
    /* the meter's window lies inside ours: its CPU time is at most ours, and most of it */
    CHECK_MSG(j <= 12.0 * (c1 - c0) + 0.1 + 1e-9, "%g J for %g s", j, c1 - c0);
    CHECK_MSG(j >= 12.0 * (c1 - c0) * 0.8 + 0.1, "%g J for %g s", j, c1 - c0);
    energy_meter_close(&m);
}

/* ---- attribution ---- */

static void split_sums_to_total_in_proportion(void) {
    test_rng rng = {7};
    for (int round = 0; round < 200; round++) {
        double work[17], out[17];
        const int n = 1 + (int)(test_rng_next(&rng) % 17);
        double total_w = 0;
        for (int i = 0; i < n; i++) {
            work[i] = (test_rng_next(&rng) % 4 == 0) ? 0 : 1 + (double)(test_rng_next(&rng) % 100000);
            total_w += work[i];
        }
        const double joules = 0.001 + (double)(test_rng_next(&rng) % 1000000) / 1000.0;
        energy_split(joules, work, n, out);
        double sum = 0;
        for (int i = 0; i < n; i++) {
            sum += out[i];
            const double want = total_w > 0 ? joules * work[i] / total_w : joules / n;
            CHECK_NEAR(out[i], want, 1e-9 * joules);
        }
        CHECK_NEAR(sum, joules, 1e-12 * joules);
    }
    double w0[3] = {0, 0, 0}, o0[3];
    energy_split(3.0, w0, 3, o0);
    CHECK_NEAR(o0[0] + o0[1] + o0[2], 3.0, 1e-12);
    CHECK_NEAR(o0[1], 1.0, 1e-12);
}

static void token_work_follows_the_stated_rule(void) {
    sov_model_info info = {0};
    info.n_vocab = 1000;
    info.n_embd = 64;
    info.n_layer = 4;
    info.n_head = 8;
    info.n_head_kv = 2;
    info.head_dim = 8;
    info.n_params = 1000000;
    info.weight_bytes = 4000000;
    energy_model em;
    energy_model_init(&em, &info, 0); /* an F16 cache */
    /* written out from the rule in energy.h */
    const double below = 2.0 * (1000000 - 1000 * 64), attn = 4.0 * 4 * 8 * 8, head = 2.0 * 1000 * 64;
    CHECK_NEAR(energy_token_work(&em, 0, false), below + attn, 1e-6);
    CHECK_NEAR(energy_token_work(&em, 99, false), below + 100 * attn, 1e-6);
    CHECK_NEAR(energy_token_work(&em, 99, true), below + 100 * attn + head, 1e-6);
    CHECK(energy_token_work(&em, 10, true) > energy_token_work(&em, 10, false)); /* decode > prompt */
    CHECK(energy_token_work(&em, 11, false) > energy_token_work(&em, 10, false)); /* later > earlier */
    CHECK_NEAR(em.kv_bytes_per_pos, 2.0 * 4 * 2 * 8 * 2, 1e-9);
    CHECK_NEAR(em.weight_bytes, 4e6, 0);
}

/* ---- through the engine loop ---- */

static char g_model_path[512];

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
} waiter;
static waiter g_w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void on_notify(void *user) {
    waiter *w = user;
    pthread_mutex_lock(&w->mu);
    w->pending = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void wait_a_little(waiter *w) {
    pthread_mutex_lock(&w->mu);
    if (!w->pending) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    w->pending = 0;
    pthread_mutex_unlock(&w->mu);
}

static void engine_requests_share_the_total(void) {
    sov_model *model = NULL;
    if (sov_model_load(g_model_path, NULL, &model) != SOV_OK) {
        CHECK_MSG(false, "%s", sov_last_error());
        return;
    }
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = 256;
    cp.n_seq_max = 4;
    cp.n_batch = 64;
    cp.n_threads = 1;
    sov_context *ctx = NULL;
    CHECK(sov_context_new(model, &cp, &ctx) == SOV_OK);
    energy_meter m;
    const energy_params ep = {10.0, 100.0};
    energy_meter_init(&m, &ep, true);
    const sched_params p = {.n_parallel = 4, .n_batch = 64, .max_queue = 16, .n_ctx = 256, .notify = on_notify,
                            .notify_user = &g_w, .meter = &m};
    sched *s = NULL;
    CHECK(sched_new(ctx, model, &p, &s) == SOV_OK);
    enum { N = 6 };
    sched_req *reqs[N];
    double joules[N] = {0};
    bool done[N] = {false};
    for (int i = 0; i < N; i++) {
        sov_token prompt[100];
        const int n = 5 + 17 * i; /* prompts of 5..90 tokens: several take more than one step */
        for (int k = 0; k < n; k++)
            prompt[k] = (sov_token)(1 + (k * 31 + i * 7) % 500);
        sched_req_params rp = {0};
        rp.sp = sov_sampler_default_params();
        rp.sp.temperature = 0;
        rp.max_tokens = 4 + 3 * i;
        rp.ignore_eos = true;
        rp.top_logprobs = -1;
        rp.tenant = i % 2 ? "a" : "b";
        reqs[i] = sched_req_new(prompt, n, &rp, (void *)(intptr_t)i);
        CHECK(reqs[i] && sched_submit(s, reqs[i]) == SCHED_SUBMITTED);
    }
    int left = N;
    const double t_end = sov_now_s() + 120;
    while (left > 0 && sov_now_s() < t_end) {
        wait_a_little(&g_w);
        sched_req *ready[16];
        const int32_t k = sched_poll(s, ready, 16);
        for (int32_t j = 0; j < k; j++) {
            const int idx = (int)(intptr_t)sched_req_user(ready[j]);
            sched_delta d;
            sched_take(s, ready[j], &d);
            free(d.text);
            free(d.toks);
            CHECK(d.energy_j >= joules[idx]); /* it only grows */
            joules[idx] = d.energy_j;
            if (d.finish != SCHED_RUNNING && !done[idx]) {
                done[idx] = true;
                sched_req_release(ready[j]);
                left--;
            }
        }
    }
    CHECK_EQ(left, 0);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.energy_on);
    CHECK_EQ(st.energy_source, ENERGY_ESTIMATED);
    double sum = 0;
    for (int i = 0; i < N; i++) {
        CHECK_MSG(joules[i] > 0, "request %d got %g J", i, joules[i]);
        sum += joules[i];
    }
    /* every step's joules went to the requests in it: the shares add up to the total */
    CHECK_MSG(st.energy_j > 0, "%g", st.energy_j);
    CHECK_NEAR(sum, st.energy_j, 1e-9 * st.energy_j);
    /* the DRAM term alone (every step reads the weights) bounds the total from below */
    sov_model_info info;
    sov_model_get_info(model, &info);
    CHECK(st.energy_j >= (double)st.steps * (double)info.weight_bytes * 100e-12);
    sched_free(s);
    energy_meter_close(&m);
    sov_context_free(ctx);
    sov_model_free(model);
}

int main(void) {
    sov_synth_params sp = sov_synth_default_params();
    sp.n_embd = 64;
    sp.n_layer = 2;
    sp.n_head = 4;
    sp.n_head_kv = 2;
    sp.n_ff = 128;
    sp.n_vocab = 512;
    sp.n_ctx = 256;
    sp.seed = 3;
    test_tmp_path("energy_model.gguf", g_model_path, sizeof g_model_path);
    if (sov_synth_write(&sp, g_model_path, NULL, NULL) != SOV_OK) {
        fprintf(stderr, "cannot write the model: %s\n", sov_last_error());
        return 1;
    }
    RUN(counter_delta_wraps);
    RUN(fake_tree_gives_joules_across_a_wrap);
    RUN(missing_or_unreadable_tree_falls_back_to_estimate);
    RUN(malformed_values_are_refused);
    RUN(estimate_is_cpu_time_times_watts_plus_dram);
    RUN(split_sums_to_total_in_proportion);
    RUN(token_work_follows_the_stated_rule);
    RUN(engine_requests_share_the_total);
    TEST_EXIT();
}
