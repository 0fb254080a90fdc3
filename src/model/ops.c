/* ops.c - the threaded operations of the forward pass (see ops.h).
 *
 * Matrix products: the batch's activations are quantized once into the weight type's
 * activation format (Q8A for the 32-blocks, Q8K for the k-quants, none for float
 * weights), then the weight rows are split across threads; each thread walks its rows
 * in tiles of ROW_TILE rows x COL_TILE tokens so a tile of weights is reused for every
 * token of the batch while it is in cache. */
#include "model/ops.h"

#include <math.h>
#include <string.h>

#include "core/util.h"
#include "kernels/attn_tiled.h"

enum { ROW_TILE = 16, COL_TILE = 8 };

static void barrier(const op_thread *t) { sov_pool_barrier(t->c->pool); }

static void split(long n, long align, const op_thread *t, long *b, long *e) {
    sov_split_range(n, align, t->ith, t->nth, b, e);
}

void op_rmsnorm(const op_thread *t, float *y, const float *x, const float *w, int T, int64_t n) {
    long b, e;
    split(T, 1, t, &b, &e);
    const float eps = t->c->model->hp.rms_eps;
    for (long i = b; i < e; i++) t->c->k->rmsnorm(y + i * n, x + i * n, w, n, eps);
    barrier(t);
}

static void *act_buffer(const sov_context *c, sov_type at) {
    return at == SOV_TYPE_Q8A ? c->act_q8a : at == SOV_TYPE_Q8P ? c->act_q8p : c->act_q8k;
}

void op_matmuls(const op_thread *t, const float *x, int T, const op_matmul *mm, int n_mm) {
    sov_context *c = t->c;
    const sov_kernels *k = c->k;
    const int64_t K = mm[0].w->n_cols;

    /* 1. quantize x once per activation format the products need */
    bool need_a = false, need_k = false, need_p = false;
    for (int i = 0; i < n_mm; i++) {
        const sov_type at = sov_type_info(mm[i].w->type)->act_type;
        need_a |= at == SOV_TYPE_Q8A;
        need_k |= at == SOV_TYPE_Q8K;
        need_p |= at == SOV_TYPE_Q8P;
    }
    if (need_a || need_k || need_p) {
        long b, e;
        split(T, 1, t, &b, &e);
        for (long i = b; i < e; i++) {
            if (need_a) k->quantize_q8a(x + i * K, (char *)c->act_q8a + i * sov_row_size(SOV_TYPE_Q8A, K), K);
            if (need_k) k->quantize_q8k(x + i * K, (char *)c->act_q8k + i * sov_row_size(SOV_TYPE_Q8K, K), K);
            if (need_p) k->quantize_q8p(x + i * K, (char *)c->act_q8p + i * sov_row_size(SOV_TYPE_Q8P, K), K);
        }
        barrier(t);
    }

    /* 2. split all products' rows together across the threads */
    long total = 0;
    for (int i = 0; i < n_mm; i++) total += mm[i].w->n_rows;
    long rb, re;
    split(total, ROW_TILE, t, &rb, &re);
    long base = 0;
    for (int i = 0; i < n_mm; i++) {
        const op_matmul *m = &mm[i];
        const sov_weight *w = m->w;
        const long N = w->n_rows;
        const long lo = SOV_MAX(rb - base, 0), hi = SOV_MIN(re - base, N);
        base += N;
        if (lo >= hi) continue;
        const sov_type at = sov_type_info(w->type)->act_type;
        const void *a = at == SOV_TYPE_F32 ? (const void *)x : act_buffer(c, at);
        const size_t lda = at == SOV_TYPE_F32 ? (size_t)K * sizeof(float) : sov_row_size(at, K);
        const sov_gemm_fn gemm = k->gemm[w->type];
        /* accumulate: compute into tmp (same layout as y), then add */
        float *dst = m->accumulate ? c->tmp : m->y;
        for (long r0 = lo; r0 < hi; r0 += ROW_TILE) {
            const int nr = (int)SOV_MIN(ROW_TILE, hi - r0);
            const char *wr = (const char *)w->data + (size_t)r0 * w->row_bytes;
            for (int c0 = 0; c0 < T; c0 += COL_TILE) {
                const int nc = SOV_MIN(COL_TILE, T - c0);
                gemm(K, wr, w->row_bytes, nr, (const char *)a + (size_t)c0 * lda, lda, nc,
                     dst + (size_t)c0 * (size_t)N + (size_t)r0, (size_t)N);
            }
        }
        for (int tok = 0; tok < T; tok++) {
            float *yr = m->y + (size_t)tok * (size_t)N;
            if (m->accumulate) k->add(yr + lo, dst + (size_t)tok * (size_t)N + lo, hi - lo);
            if (m->bias) k->add(yr + lo, m->bias + lo, hi - lo);
        }
    }
    barrier(t);
}

/* cos/sin of every pair of every token into cache (T, n_rot), for RoPE base `base`;
 * scaled: with the model's frequency scaling (linear, YaRN) and factors ff. */
static void rope_cache_fill(const op_thread *t, const int32_t *pos, int T, float *cache, float base, bool scaled,
                            const float *ff) {
    const sov_context *c = t->c;
    const sov_hparams *hp = &c->model->hp;
    const int half = hp->n_rot / 2;
    const float fs = scaled ? hp->rope_freq_scale : 1.0f, ext = scaled ? hp->yarn_ext_factor : 0.0f;
    float mscale = hp->yarn_attn_factor;
    if (ext != 0.0f) mscale *= 1.0f + 0.1f * logf(1.0f / fs);
    long b, e;
    split(T, 1, t, &b, &e);
    for (long i = b; i < e; i++) {
        float *cs = cache + i * hp->n_rot;
        for (int j = 0; j < half; j++) {
            /* theta of pair j: pos * base^(-2j / n_rot), divided by its frequency factor */
            const double inv_freq = pow((double)base, -2.0 * j / hp->n_rot);
            float extrap = (float)((double)pos[i] * inv_freq);
            if (ff) extrap /= ff[j];
            const float interp = fs * extrap;
            float theta = interp;
            if (ext != 0.0f) {
                const float y = ((float)j - c->yarn_corr[0]) / SOV_MAX(0.001f, c->yarn_corr[1] - c->yarn_corr[0]);
                const float ramp = (1.0f - SOV_MIN(1.0f, SOV_MAX(0.0f, y))) * ext;
                theta = interp * (1.0f - ramp) + extrap * ramp;
            }
            cs[2 * j] = cosf(theta) * mscale;
            cs[2 * j + 1] = sinf(theta) * mscale;
        }
    }
}

/* The frequency divisors of the model's RoPE: LongRoPE's long factors when the context
 * is longer than the original one, its short ones otherwise (as llama.cpp chooses, by
 * the context size, not the position), else rope_freqs or none. */
static const float *rope_factors(const sov_context *c) {
    const sov_model *m = c->model;
    if (m->rope_long) return c->p.n_ctx > m->hp.rope_orig_ctx ? m->rope_long : m->rope_short;
    return m->rope_freqs;
}

void op_rope_cache(const op_thread *t, const int32_t *pos, int T) {
    const sov_context *c = t->c;
    const sov_model *m = c->model;
    rope_cache_fill(t, pos, T, c->rope, m->hp.rope_base, true, rope_factors(c));
    bool local = false;
    for (int il = 0; il < m->hp.n_layer && !local; il++) local = m->layers[il].rope == SOV_LAYER_ROPE_LOCAL;
    /* gemma3's local layers: their own base, no scaling (llama.cpp's freq_scale_swa = 1) */
    if (local) rope_cache_fill(t, pos, T, c->rope_local, m->hp.rope_base_swa, false, NULL);
    barrier(t);
}

void op_rope(const op_thread *t, float *x, int T, int n_heads) { op_rope_with(t, x, T, n_heads, t->c->rope); }

void op_rope_with(const op_thread *t, float *x, int T, int n_heads, const float *cache) {
    const sov_context *c = t->c;
    const sov_hparams *hp = &c->model->hp;
    const int D = hp->head_dim, half = hp->n_rot / 2;
    const bool neox = hp->rope_order == SOV_ROPE_NEOX;
    long b, e;
    split((long)T * n_heads, 1, t, &b, &e);
    for (long r = b; r < e; r++) {
        const long tok = r / n_heads;
        float *v = x + r * D;
        const float *cs = cache + tok * hp->n_rot;
        for (int j = 0; j < half; j++) {
            const int i0 = neox ? j : 2 * j, i1 = neox ? j + half : 2 * j + 1;
            const float x0 = v[i0], x1 = v[i1], cth = cs[2 * j], sth = cs[2 * j + 1];
            v[i0] = x0 * cth - x1 * sth;
            v[i1] = x0 * sth + x1 * cth;
        }
    }
    barrier(t);
}

void op_kv_store(const op_thread *t, int layer, const float *k, const float *v, int T) {
    const sov_context *c = t->c;
    sov_kv *kv = (sov_kv *)&c->kv;
    const int Hkv = kv->n_head_kv, D = kv->head_dim, bs = kv->block_size;
    long b, e;
    split((long)T * Hkv, 1, t, &b, &e);
    for (long r = b; r < e; r++) {
        const int tok = (int)(r / Hkv), g = (int)(r % Hkv);
        const int32_t pos = c->tok_pos[tok];
        kv_attn_store(c->k, kv, layer, c->tok_blocks[tok][pos / bs], pos % bs, g, k + r * D, v + r * D);
    }
    barrier(t);
}

/* Split-K: a batch with fewer (token, kv head) tasks than twice the threads (decode of
 * one or a few sequences) splits each task's positions into parts of whole tiles, so
 * every thread works at any depth; the parts' states merge after a barrier. */
static int attention_parts(int tasks, int nth) { return tasks >= 2 * nth ? 1 : (2 * nth + tasks - 1) / tasks; }

size_t op_attention_partials_floats(int n_threads, int rep, int head_dim) {
    /* tasks * parts < 2 * nth + tasks <= 4 * nth */
    return 4 * (size_t)n_threads * kv_attn_state_floats(rep, head_dim);
}

int op_attention_group(int rep) {
    int g = SOV_MAX(1, 16 / SOV_MAX(rep, 1));
    if ((rep * g) % 4 != 0 && g > 1 && (rep * (g - 1)) % 4 == 0) g--;
    return g;
}

size_t op_attention_scratch_floats(const sov_kv *kv, int rep, int head_dim) {
    const int rows = rep * op_attention_group(rep);
    /* the kernels' scratch, a state, the rows' queries, their ends */
    return kv_attn_scratch_floats(kv, rows) + kv_attn_state_floats(rows, head_dim) + (size_t)rows * head_dim +
           (size_t)rows;
}

/* A prompt: runs of up to op_attention_group consecutive tokens of one sequence (the
 * context's attn_grp) take one pass over the keys and values per KV head, their rep * n
 * query rows gathered and each row masked at its own position (kv_attn_run's row ends).
 * A key block is then read once for the run instead of once per token, and the score and
 * value kernels work on 8- and 4-row tiles where a lone token of a model with 3 query
 * heads per KV head took 1-row ones. Each row gets bit for bit what it gets alone. */
static void attention_runs(const op_thread *t, int layer, const float *q, float *out) {
    const sov_context *c = t->c;
    const sov_kv *kv = &c->kv;
    const sov_hparams *hp = &c->model->hp;
    const int H = hp->n_head, Hkv = hp->n_head_kv, D = hp->head_dim, rep = H / Hkv;
    const int rows_max = rep * op_attention_group(rep);
    float *scratch = c->attn_scratch + (size_t)t->ith * c->attn_scratch_stride;
    float *state = scratch + kv_attn_scratch_floats(kv, rows_max);
    float *qr = state + kv_attn_state_floats(rows_max, D);
    int32_t *ends = (int32_t *)(qr + (size_t)rows_max * D);
    const int tasks = c->n_attn_grp * Hkv;
    /* round-robin: later runs of a prompt cost more (causal) */
    for (int task = t->ith; task < tasks; task += t->nth) {
        const int run = task / Hkv, g = task % Hkv;
        const int t0 = c->attn_grp[run], nt = c->attn_grp[run + 1] - t0, rows = nt * rep;
        for (int i = 0; i < nt; i++) {
            memcpy(qr + (size_t)i * rep * D, q + ((size_t)(t0 + i) * H + (size_t)g * rep) * D,
                   (size_t)rep * D * sizeof(float));
            for (int h = 0; h < rep; h++) ends[i * rep + h] = c->tok_pos[t0 + i] + 1;
        }
        kv_attn_state_init(state, rows, D);
        kv_attn_run(c->k, kv, layer, g, c->tok_blocks[t0], 0, c->tok_pos[t0 + nt - 1] + 1, qr, rows, ends,
                    hp->attn_scale, scratch, state);
        /* the merge writes the rows of one token's rep heads: rows i*rep.. of the state */
        for (int i = 0; i < nt; i++) {
            float *og = out + ((size_t)(t0 + i) * H + (size_t)g * rep) * D;
            kv_attn_merge_rows(state, 1, rows, D, i * rep, rep, og);
        }
    }
    barrier(t);
}

void op_attention(const op_thread *t, int layer, const float *q, float *out, int T) {
    const sov_context *c = t->c;
    const sov_kv *kv = &c->kv;
    const sov_hparams *hp = &c->model->hp;
    const int H = hp->n_head, Hkv = hp->n_head_kv, D = hp->head_dim, rep = H / Hkv;
    const float scale = hp->attn_scale;
    /* sliding window (0: none): a token attends to positions max(0, pos - window + 1)..pos;
     * the tiles before the window's are not read */
    const int32_t window = c->model->layers[layer].swa ? hp->n_swa : 0;
    /* runs of a prompt's tokens together, when they leave every thread work without
     * splitting a task's positions (split-K is for decode). The runs come from the ops'
     * view of the batch (tok_pos, tok_blocks: one block table per sequence), which a
     * pipeline stage moves to each micro-batch in turn. */
    if (window == 0 && T > 1) {
        if (t->ith == 0) {
            sov_context *cw = t->c;
            const int group = op_attention_group(rep);
            cw->n_attn_grp = 0;
            for (int i = 0; i < T; i++)
                if (i == 0 || c->tok_blocks[i] != c->tok_blocks[i - 1] || c->tok_pos[i] != c->tok_pos[i - 1] + 1 ||
                    i - cw->attn_grp[cw->n_attn_grp - 1] >= group)
                    cw->attn_grp[cw->n_attn_grp++] = i; /* a new run */
            cw->attn_grp[cw->n_attn_grp] = T;
        }
        barrier(t);
        if (c->n_attn_grp < T && c->n_attn_grp * Hkv >= 2 * t->nth) {
            attention_runs(t, layer, q, out);
            return;
        }
    }
    float *scratch = c->attn_scratch + (size_t)t->ith * c->attn_scratch_stride;
    float *own = scratch + kv_attn_scratch_floats(kv, rep); /* this thread's state */
    const size_t sf = kv_attn_state_floats(rep, D);
    const int tasks = T * Hkv, parts = attention_parts(tasks, t->nth);

    /* units (task, part) are dealt round-robin: with causal masking later tokens cost
     * more, so contiguous ranges would leave the first thread idle */
    for (long u = t->ith; u < (long)tasks * parts; u += t->nth) {
        const int task = (int)(u / parts), part = (int)(u % parts);
        const int tok = task / Hkv, g = task % Hkv;
        const int32_t n = c->tok_pos[tok] + 1; /* causal: positions 0..pos */
        const int32_t first = window > 0 ? SOV_MAX(0, n - window) : 0;
        const float *qg = q + ((size_t)tok * H + (size_t)g * rep) * D; /* rep query heads */
        float *og = out + ((size_t)tok * H + (size_t)g * rep) * D;
        /* this part's share of the positions, in whole tiles */
        const int32_t n_tiles = (n - first / KV_ATTN_TILE * KV_ATTN_TILE + KV_ATTN_TILE - 1) / KV_ATTN_TILE;
        const int32_t base = first / KV_ATTN_TILE * KV_ATTN_TILE;
        const int32_t j0 = SOV_MAX(first, base + (int32_t)((int64_t)n_tiles * part / parts) * KV_ATTN_TILE);
        const int32_t j1 = SOV_MIN(n, base + (int32_t)((int64_t)n_tiles * (part + 1) / parts) * KV_ATTN_TILE);
        float *state = parts == 1 ? own : c->attn_partials + (size_t)u * sf;
        kv_attn_state_init(state, rep, D);
        if (j0 < j1) kv_attn_run(c->k, kv, layer, g, c->tok_blocks[tok], j0, j1, qg, rep, NULL, scale, scratch, state);
        if (parts == 1) kv_attn_merge(state, 1, rep, D, og);
    }
    if (parts > 1) {
        barrier(t);
        for (int task = t->ith; task < tasks; task += t->nth) {
            const int tok = task / Hkv, g = task % Hkv;
            kv_attn_merge(c->attn_partials + (size_t)task * parts * sf, parts, rep, D,
                          out + ((size_t)tok * H + (size_t)g * rep) * D);
        }
    }
    barrier(t);
}

void op_silu_mul(const op_thread *t, float *y, const float *x, int T, int64_t n) {
    /* whole rows per thread: a kernel may treat a row's tail differently from its body, so
     * a value's result must not depend on where a thread's range happens to start */
    long b, e;
    split(T, 1, t, &b, &e);
    for (long i = b; i < e; i++) t->c->k->silu_mul(y + i * n, y + i * n, x + i * n, n);
    barrier(t);
}

void op_gelu_mul(const op_thread *t, float *y, const float *x, int T, int64_t n) {
    long b, e; /* whole rows per thread, as op_silu_mul */
    split(T, 1, t, &b, &e);
    for (long i = b; i < e; i++) t->c->k->gelu_mul(y + i * n, y + i * n, x + i * n, n);
    barrier(t);
}

void op_add(const op_thread *t, float *y, const float *x, int T, int64_t n) {
    long b, e;
    split(T, 1, t, &b, &e);
    for (long i = b; i < e; i++) t->c->k->add(y + i * n, x + i * n, n);
    barrier(t);
}

void op_embed(const op_thread *t, float *x, const int32_t *tokens, int T) {
    const sov_weight *w = &t->c->model->tok_embd;
    const float scale = t->c->model->hp.embd_scale;
    long b, e;
    split(T, 1, t, &b, &e);
    for (long i = b; i < e; i++) {
        sov_dequantize_row((sov_type)w->type, (const char *)w->data + (size_t)tokens[i] * w->row_bytes,
                           x + i * w->n_cols, w->n_cols);
        if (scale != 1.0f) t->c->k->scale(x + i * w->n_cols, scale, w->n_cols);
    }
    barrier(t);
}

void op_gather(const op_thread *t, float *dst, const float *src, const int32_t *rows, int n, int64_t E) {
    long b, e;
    split(n, 1, t, &b, &e);
    for (long i = b; i < e; i++) memmove(dst + i * E, src + (size_t)rows[i] * (size_t)E, (size_t)E * sizeof(float));
    barrier(t);
}
