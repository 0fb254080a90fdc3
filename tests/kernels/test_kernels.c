/* Every kernel table against the scalar reference and against double precision, entry by
 * entry (the idea of ggml's test-backend-ops). For each table compiled in that this CPU
 * can run (the others are reported as skipped, by name), on random inputs of many sizes
 * and magnitudes:
 *
 *   vec_dot, every weight type the table must have (F32, F16, BF16, the 32-blocks, the
 *     k-quants) and the optional planar ones it has (Q4_0P, Q8_0P: a table either has
 *     both vec_dot and gemm for one or neither): weights quantized from random floats
 *     and weights of random bytes (every bit pattern a file may hold: q8_0 -128, q6_K
 *     scale -128, all fifth bits, negative and subnormal half scales, 2^15 scales), from
 *     1 block to 176, float rows of lengths that are not multiples of 8; activations at
 *     1e-6, 1 and 1e4. Tolerance: |got - ref| <= 1e-5 * sum_i |w_i a_i| (+1e-30), ref
 *     the double dot of the dequantized operands. Why 1e-5: integer parts are exact and
 *     only float32 rounding in a different order differs; each rounding is at most
 *     2^-24 of a partial sum, which is bounded by sum |w_i a_i|, and with the many
 *     blocks' errors of either sign the measured error is ~1e-7 of it. A single wrong
 *     element (a nibble or a bit in the wrong place) moves the dot by ~1/n of that sum,
 *     >= 1.7e-4 for these sizes: far outside the bound.
 *   gemm, every tile nr x nc for nr, nc in 1..8, weight and activation strides that are
 *     not multiples of any vector width, several row lengths (odd block counts, planar
 *     leftovers): every y[c][r] bitwise equal to vec_dot of row r and column c — the
 *     engine relies on it so that a token's logits do not depend on its batch.
 *   avx512 and avx512_vnni (kernels_avx2.c compiled again, with VNNI in the latter):
 *     every vec_dot and gemm result bitwise equal to the avx2 table's on the same inputs,
 *     except the native 512-bit tiles (k-quants: avx512_vnni equal to avx512, avx512
 *     within the reference tolerance; avx512_vnni's Q4_0P: tolerance); see
 *     bitwise_base_of.
 *   quantize_q8a / q8k / q8p: bytes identical to the scalar table, and the scalar table
 *     equal to the contract written out here (d = max|x| / 127, q = round-half-even(x / d)
 *     incl. exact .5 ties, s = d * sum q, bsums), for 1..many blocks.
 *   float ops, against double precision (tolerances at each check, with the reason) and
 *     against scalar: rmsnorm (also in place, y == x, bitwise equal to out of place),
 *     silu_mul, add and scale (exactly the float operation), dot_f32 / dot_f16 (as the
 *     dots), axpy_f32 / f16, f32_to_f16 (bit-identical incl. subnormals, ties, overflow,
 *     inf, NaN), softmax (incl. -inf and n = 1), layernorm with bias and gelu_erf (the
 *     encoders', also in place).
 *   attention over a KV block (scores against transposed keys, values) for several query
 *     heads at once, f16 and f32, odd shapes and partial blocks, against double.
 * No files are read, so the same test runs cross-compiled under qemu-aarch64. */
#include "test.h"

#include "kernels/kernels.h"
#include "quant/quant.h"

static const sov_type required_types[] = {SOV_TYPE_F32,  SOV_TYPE_F16,  SOV_TYPE_BF16, SOV_TYPE_Q4_0,
                                          SOV_TYPE_Q4_1, SOV_TYPE_Q5_0, SOV_TYPE_Q5_1, SOV_TYPE_Q8_0,
                                          SOV_TYPE_Q4_K, SOV_TYPE_Q5_K, SOV_TYPE_Q6_K};
static const sov_type optional_types[] = {SOV_TYPE_Q4_0P, SOV_TYPE_Q8_0P};

static test_rng rng = {0x5eed};

static uint64_t rnd(uint64_t n) { return test_rng_next(&rng) % n; }

/* ---- inputs ---- */

/* n random floats of magnitude ~scale, with a few 8x outliers */
static void fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = test_rng_float(&rng) * scale;
        if (rnd(61) == 0) x[i] *= 8.0f;
    }
}

/* a float of magnitude in [2^lo, 2^hi), random mantissa (10 bits) and sign */
static float rand_pow2(int lo, int hi) {
    const float m = 1.0f + (float)rnd(1024) / 1024.0f;
    const float v = ldexpf(m, lo + (int)rnd((uint64_t)(hi - lo)));
    return rnd(2) ? -v : v;
}
static sov_half rand_half(int lo, int hi) { return sov_f32_to_half(rand_pow2(lo, hi)); }

static sov_type file_type_of(sov_type t) {
    return t == SOV_TYPE_Q4_0P ? SOV_TYPE_Q4_0 : t == SOV_TYPE_Q8_0P ? SOV_TYPE_Q8_0 : t;
}

/* The scale field(s) of every block of a file-type row set to random halves of magnitude
 * 2^lo..2^hi (the other bytes stay random). */
static void set_scales(sov_type t, void *row, int64_t nb, int lo, int hi) {
    for (int64_t i = 0; i < nb; i++) {
        switch (t) {
        case SOV_TYPE_Q4_0: ((block_q4_0 *)row)[i].d = rand_half(lo, hi); break;
        case SOV_TYPE_Q5_0: ((block_q5_0 *)row)[i].d = rand_half(lo, hi); break;
        case SOV_TYPE_Q8_0: ((block_q8_0 *)row)[i].d = rand_half(lo, hi); break;
        case SOV_TYPE_Q4_1:
            ((block_q4_1 *)row)[i].d = rand_half(lo, hi);
            ((block_q4_1 *)row)[i].m = rand_half(lo, hi);
            break;
        case SOV_TYPE_Q5_1:
            ((block_q5_1 *)row)[i].d = rand_half(lo, hi);
            ((block_q5_1 *)row)[i].m = rand_half(lo, hi);
            break;
        case SOV_TYPE_Q4_K:
            ((block_q4_K *)row)[i].d = rand_half(lo, hi);
            ((block_q4_K *)row)[i].dmin = rand_half(lo, hi);
            break;
        case SOV_TYPE_Q5_K:
            ((block_q5_K *)row)[i].d = rand_half(lo, hi);
            ((block_q5_K *)row)[i].dmin = rand_half(lo, hi);
            break;
        case SOV_TYPE_Q6_K: ((block_q6_K *)row)[i].d = rand_half(lo, hi); break;
        default: break;
        }
    }
}

typedef enum { W_QUANTIZED, W_RANDOM_BITS } wmode;

/* A weight row of type t and n values (with 64 bytes of slack). W_QUANTIZED: random
 * floats of magnitude `scale` through the reference quantizer. W_RANDOM_BITS: random
 * bytes with the block scales drawn from 2^lo..2^hi (float rows: values from that range). */
static void *weights(sov_type t, int64_t n, wmode mode, float scale, int lo, int hi) {
    const size_t size = sov_row_size(t, n);
    uint8_t *w = malloc(size + 64);
    if (mode == W_QUANTIZED) {
        float *x = malloc((size_t)n * sizeof *x);
        fill(x, n, scale);
        CHECK(sov_quantize_row(t, x, w, n));
        free(x);
        return w;
    }
    const sov_type ft = file_type_of(t);
    if (ft == SOV_TYPE_F32) {
        for (int64_t i = 0; i < n; i++) ((float *)w)[i] = rand_pow2(lo, hi);
    } else if (ft == SOV_TYPE_F16) {
        for (int64_t i = 0; i < n; i++) ((sov_half *)w)[i] = rand_half(lo, hi);
    } else if (ft == SOV_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) ((sov_bf16 *)w)[i] = sov_f32_to_bf16(rand_pow2(lo, hi));
    } else {
        for (size_t i = 0; i < size; i++) w[i] = (uint8_t)test_rng_next(&rng);
        set_scales(ft, w, n / sov_type_info(ft)->block_size, lo, hi);
        if (ft != t) CHECK(sov_repack_row_planar(ft, w, n));
    }
    return w;
}

static size_t act_size(sov_type t, int64_t n) {
    const sov_type at = sov_type_info(t)->act_type;
    return at == SOV_TYPE_F32 ? (size_t)n * sizeof(float) : sov_row_size(at, n);
}

/* The activation row weight type t takes, made by table k from floats x. */
static void activation_into(const sov_kernels *k, sov_type t, const float *x, int64_t n, void *a) {
    const sov_type at = sov_type_info(t)->act_type;
    if (at == SOV_TYPE_F32) memcpy(a, x, (size_t)n * sizeof *x);
    else if (at == SOV_TYPE_Q8A) k->quantize_q8a(x, a, n);
    else if (at == SOV_TYPE_Q8P) k->quantize_q8p(x, a, n);
    else k->quantize_q8k(x, a, n);
}

static void *activation(const sov_kernels *k, sov_type t, const float *x, int64_t n) {
    void *a = malloc(act_size(t, n) + 64);
    activation_into(k, t, x, n, a);
    return a;
}

/* reference: the double dot of the dequantized rows; *mag = sum |w_i a_i| */
static double ref_dot(sov_type t, const void *w, const void *a, int64_t n, double *mag) {
    const sov_type at = sov_type_info(t)->act_type;
    float *wf = malloc((size_t)n * sizeof *wf), *af = malloc((size_t)n * sizeof *af);
    sov_dequantize_row(t, w, wf, n);
    sov_dequantize_row(at, a, af, n);
    double s = 0.0, m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wf[i] * af[i];
        m += fabs((double)wf[i] * af[i]);
    }
    free(wf);
    free(af);
    *mag = m;
    return s;
}

/* ---- the activation quantizers ---- */

/* The Q8A contract, written out: per block of 32, d = max|x| / 127 (float), q =
 * round-half-even(x * (1 / d)) (0 when d == 0), s = d * sum q. */
static bool q8a_matches_contract(const float *x, const block_q8a *y, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[QK * i + j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            const float v = x[QK * i + j] * id;
            const int q = (int)rintf(v);
            if (y[i].qs[j] != q) return false;
            sum += q;
        }
        if (y[i].d != d || y[i].s != d * (float)sum) return false;
    }
    return true;
}

static bool q8k_matches_contract(const float *x, const block_q8k *y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++) {
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(x[QK_K * i + j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        if (y[i].d != d) return false;
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 16 * g; j < 16 * g + 16; j++) {
                const int q = (int)rintf(x[QK_K * i + j] * id);
                if (y[i].qs[j] != q) return false;
                sum += q;
            }
            if (y[i].bsums[g] != sum) return false;
        }
    }
    return true;
}

/* Q8P holds the Q8A values of the same input, planar */
static bool q8p_matches_q8a(const uint8_t *p, const block_q8a *a, int64_t n) {
    const int64_t nb = n / QK;
    for (int64_t i = 0; i < nb; i++) {
        float d, s;
        memcpy(&d, p + 4 * i, 4);
        memcpy(&s, p + 4 * nb + 4 * i, 4);
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            const int8_t q = (int8_t)p[8 * nb + sov_q8p_index(i, j, nb)];
            if (q != a[i].qs[j]) return false;
            sum += q;
        }
        if (d != a[i].d || s != (float)sum) return false;
    }
    return true;
}

/* A row that makes every rounding case happen: block 0 has max 127 (d = 1, id = 1) and
 * exact halves (2.5 -> 2, 3.5 -> 4, -0.5 -> -0, 126.5 -> 126); the others random at the
 * given magnitude, with zeros, a negative zero and one all-zero block. */
static void quantizer_input(float *x, int64_t n, float scale) {
    fill(x, n, scale);
    if (n >= 32) {
        for (int j = 0; j < 32; j++) x[j] = (float)(j * 8 - 124) + 0.5f; /* -123.5 .. 124.5 */
        x[3] = 127.0f;
        x[5] = -126.5f;
        x[6] = 126.5f;
        x[7] = -0.5f;
        x[8] = 0.5f;
        x[9] = -0.0f;
    }
    if (n >= 96) memset(x + 64, 0, 32 * sizeof *x);
}

static void check_quantizers(const sov_kernels *k) {
    static const int64_t sizes[] = {32, 64, 96, 256, 288, 320, 512, 4096 + 32};
    static const float scales[] = {1e-6f, 1.0f, 1e4f};
    const sov_kernels *s = &sov_kernels_scalar;
    for (size_t si = 0; si < SOV_ARRAY_LEN_T(sizes); si++)
        for (size_t sc = 0; sc < SOV_ARRAY_LEN_T(scales); sc++) {
            const int64_t n = sizes[si];
            float *x = malloc((size_t)n * sizeof *x);
            quantizer_input(x, n, scales[sc]);
            const size_t cap = sov_row_size(SOV_TYPE_Q8K, n + 256) + sov_row_size(SOV_TYPE_Q8A, n);
            uint8_t *a = malloc(cap), *b = malloc(cap), *c = malloc(cap);
            /* Q8A and Q8P: any number of 32-blocks */
            const size_t qa = sov_row_size(SOV_TYPE_Q8A, n), qp = sov_row_size(SOV_TYPE_Q8P, n);
            s->quantize_q8a(x, a, n);
            CHECK_MSG(q8a_matches_contract(x, (const block_q8a *)a, n), "scalar q8a contract n=%lld", (long long)n);
            memset(b, 0xAB, cap);
            k->quantize_q8a(x, b, n);
            CHECK_MSG(memcmp(a, b, qa) == 0, "%s quantize_q8a n=%lld scale %g", k->isa, (long long)n,
                      (double)scales[sc]);
            CHECK_MSG(b[qa] == 0xAB, "%s quantize_q8a writes past the row", k->isa);
            s->quantize_q8p(x, c, n);
            CHECK_MSG(q8p_matches_q8a(c, (const block_q8a *)a, n), "scalar q8p != q8a n=%lld", (long long)n);
            memset(b, 0xAB, cap);
            k->quantize_q8p(x, b, n);
            CHECK_MSG(memcmp(c, b, qp) == 0, "%s quantize_q8p n=%lld scale %g", k->isa, (long long)n,
                      (double)scales[sc]);
            CHECK_MSG(b[qp] == 0xAB, "%s quantize_q8p writes past the row", k->isa);
            /* Q8K: whole 256-blocks */
            if (n % QK_K == 0) {
                const size_t qk = sov_row_size(SOV_TYPE_Q8K, n);
                s->quantize_q8k(x, a, n);
                CHECK_MSG(q8k_matches_contract(x, (const block_q8k *)a, n), "scalar q8k contract n=%lld",
                          (long long)n);
                memset(b, 0xAB, cap);
                k->quantize_q8k(x, b, n);
                CHECK_MSG(memcmp(a, b, qk) == 0, "%s quantize_q8k n=%lld scale %g", k->isa, (long long)n,
                          (double)scales[sc]);
                CHECK_MSG(b[qk] == 0xAB, "%s quantize_q8k writes past the row", k->isa);
            }
            free(x);
            free(a);
            free(b);
            free(c);
        }
    /* the tie cases land where the contract says */
    float x[32];
    quantizer_input(x, 32, 1.0f);
    block_q8a q;
    k->quantize_q8a(x, &q, 32);
    CHECK(q.d == 1.0f && q.qs[0] == -124 && q.qs[1] == -116 && q.qs[3] == 127 && q.qs[5] == -126 &&
          q.qs[6] == 126 && q.qs[7] == 0 && q.qs[8] == 0);
}

/* ---- dot products ---- */

static bool has_type(const sov_kernels *k, sov_type t) { return k->vec_dot[t] && k->gemm[t]; }

/* The weight types table k is tested on: the required ones (missing: a failure), and the
 * optional planar ones it has (vec_dot and gemm together or neither). */
static size_t types_of(const sov_kernels *k, sov_type *out) {
    size_t n = 0;
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(required_types); i++) {
        const sov_type t = required_types[i];
        CHECK_MSG(has_type(k, t), "%s has no vec_dot/gemm for %s", k->isa, sov_type_name(t));
        if (has_type(k, t)) out[n++] = t;
    }
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(optional_types); i++) {
        const sov_type t = optional_types[i];
        CHECK_MSG(!k->vec_dot[t] == !k->gemm[t], "%s has only one of vec_dot/gemm for %s", k->isa, sov_type_name(t));
        if (has_type(k, t)) out[n++] = t;
        else fprintf(stderr, "  %-12s %-5s not in this table (optional)\n", k->isa, sov_type_name(t));
    }
    return n;
}

/* row lengths for a type: 1, 2, 3, 8, 9, 10, 17, 22 and 176 blocks (planar groups of 8
 * and their leftovers, odd pairs; 22 = 16 + 4 + 2 for the 512-bit q4_0P steps); float
 * rows also lengths that are not multiples of 8 */
static size_t lengths_for(sov_type t, int64_t *len) {
    static const int64_t blocks[] = {1, 2, 3, 8, 9, 10, 17, 22, 176};
    static const int64_t floats[] = {1, 7, 8, 13, 16, 31, 100, 257, 1000, 4099};
    const int bs = sov_type_info(t)->block_size;
    if (bs == 1) {
        memcpy(len, floats, sizeof floats);
        return SOV_ARRAY_LEN_T(floats);
    }
    size_t n = 0;
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(blocks); i++)
        if (bs == QK || blocks[i] <= 22) len[n++] = blocks[i] * bs; /* k-quants up to 22 blocks */
    return n;
}

typedef struct dot_case {
    wmode mode;
    float wscale;  /* W_QUANTIZED: float magnitude */
    int lo, hi;    /* W_RANDOM_BITS: scale exponents */
    float ascale;  /* activations */
    const char *what;
} dot_case;

static const dot_case dot_cases[] = {
    {W_QUANTIZED, 0.05f, 0, 0, 1.0f, "quantized, activations ~1"},
    {W_QUANTIZED, 0.05f, 0, 0, 1e-6f, "quantized, activations ~1e-6"},
    {W_QUANTIZED, 3.0f, 0, 0, 1e4f, "quantized, activations ~1e4"},
    {W_RANDOM_BITS, 0, -10, -4, 1.0f, "random bits, scales 2^-10..2^-4"},
    {W_RANDOM_BITS, 0, -24, -14, 1.0f, "random bits, subnormal half scales"},
    {W_RANDOM_BITS, 0, 10, 16, 1e4f, "random bits, scales to 2^15, activations ~1e4"},
    {W_RANDOM_BITS, 0, -2, 2, 1e-6f, "random bits, activations ~1e-6"},
};

static void check_dots(const sov_kernels *k, const sov_type *types, size_t nt) {
    for (size_t ti = 0; ti < nt; ti++) {
        const sov_type t = types[ti];
        int64_t len[16];
        const size_t nl = lengths_for(t, len);
        double worst = 0.0;
        for (size_t ci = 0; ci < SOV_ARRAY_LEN_T(dot_cases); ci++)
            for (size_t li = 0; li < nl; li++) {
                const dot_case *dc = &dot_cases[ci];
                const int64_t n = len[li];
                void *w = weights(t, n, dc->mode, dc->wscale, dc->lo, dc->hi);
                float *x = malloc((size_t)n * sizeof *x);
                fill(x, n, dc->ascale);
                /* the activations the scalar table makes: the quantizers are checked
                 * identical separately, so both tables see the same bytes */
                void *a = activation(&sov_kernels_scalar, t, x, n);
                double mag;
                const double want = ref_dot(t, w, a, n, &mag);
                const float got = k->vec_dot[t](n, w, a), ref = sov_kernels_scalar.vec_dot[t](n, w, a);
                const double tol = 1e-5 * mag + 1e-30;
                const double err = fabs(got - want), err_s = fabs(ref - want);
                worst = SOV_MAX_T(worst, mag > 0 ? err / mag : err);
                CHECK_MSG(err <= tol && isfinite(got), "%s vec_dot %s n=%lld (%s): %.9g vs %.9g (|err| %.2e of sum|wa|)",
                          k->isa, sov_type_name(t), (long long)n, dc->what, (double)got, want, err / (mag + 1e-300));
                CHECK_MSG(err_s <= tol, "scalar vec_dot %s n=%lld (%s): %.9g vs %.9g", sov_type_name(t), (long long)n,
                          dc->what, (double)ref, want);
                free(w);
                free(x);
                free(a);
            }
        fprintf(stderr, "  %-12s %-5s vec_dot worst |err| / sum|w a| = %.2e\n", k->isa, sov_type_name(t), worst);
    }
}

/* gemm tiles of every shape up to 8 x 8 equal vec_dot bit for bit */
static void check_gemm(const sov_kernels *k, const sov_type *types, size_t nt) {
    enum { R = 9, C = 9 }; /* row and column 0 stay unused: tiles start at an offset */
    for (size_t ti = 0; ti < nt; ti++) {
        const sov_type t = types[ti];
        const int bs = sov_type_info(t)->block_size;
        const int64_t lens[] = {bs == 1 ? 13 : bs, bs == 1 ? 100 : 3 * bs, bs == 256 ? 512 : bs == 1 ? 264 : 9 * bs,
                                bs == 32 ? 10 * bs : 2 * bs,
                                /* 32-blocks: groups of 16 blocks, of 4 and leftovers (512-bit tiles) */
                                bs == 32 ? 22 * bs : bs};
        for (size_t li = 0; li < SOV_ARRAY_LEN_T(lens); li++) {
            const int64_t n = lens[li];
            /* strides: +36 / +12 bytes keep the element alignment (UBSan) but are no
             * multiple of any vector width */
            const size_t ldw = sov_row_size(t, n) + 36, lda = act_size(t, n) + 12;
            char *W = calloc((size_t)R, ldw), *A = calloc((size_t)C, lda);
            float *x = malloc((size_t)n * sizeof *x);
            for (int r = 0; r < R; r++) {
                void *q = weights(t, n, r % 2 ? W_RANDOM_BITS : W_QUANTIZED, 0.1f, -8, -3);
                memcpy(W + (size_t)r * ldw, q, sov_row_size(t, n));
                free(q);
            }
            for (int c = 0; c < C; c++) {
                fill(x, n, 2.0f);
                activation_into(k, t, x, n, A + (size_t)c * lda);
            }
            int bad = 0;
            for (int nr = 1; nr <= 8; nr++)
                for (int nc = 1; nc <= 8; nc++) {
                    const size_t ldy = (size_t)nr + 3;
                    float *Y = malloc((size_t)nc * ldy * sizeof *Y);
                    for (size_t i = 0; i < (size_t)nc * ldy; i++) Y[i] = -12345.0f;
                    k->gemm[t](n, W + ldw, ldw, nr, A + lda, lda, nc, Y, ldy);
                    for (int c = 0; c < nc; c++) {
                        for (int r = 0; r < nr; r++) {
                            const float d = k->vec_dot[t](n, W + (size_t)(r + 1) * ldw, A + (size_t)(c + 1) * lda);
                            const float g = Y[(size_t)c * ldy + (size_t)r];
                            if (memcmp(&d, &g, sizeof d) != 0 && bad++ < 3)
                                fprintf(stderr, "%s gemm %s n=%lld %dx%d at (%d,%d): %.9g != vec_dot %.9g\n", k->isa,
                                        sov_type_name(t), (long long)n, nr, nc, r, c, (double)g, (double)d);
                        }
                        for (size_t r = (size_t)nr; r < ldy; r++) bad += Y[(size_t)c * ldy + r] != -12345.0f;
                    }
                    free(Y);
                }
            CHECK_MSG(bad == 0, "%s gemm %s n=%lld: %d products differ from vec_dot (or padding written)", k->isa,
                      sov_type_name(t), (long long)n, bad);
            free(W);
            free(A);
            free(x);
        }
    }
}

/* ---- tables built from the same source ---- */

/* The x86 tables avx512 and avx512_vnni are kernels_avx2.c compiled again (with EVEX
 * encodings, and vpdpbusd / vpdpwssd for the integer products with VNNI): where their
 * integer lanes and float operations are another table's, every vec_dot and gemm product
 * must be bit for bit that table's. The engine does not need this (it uses one table per
 * process), but it proves that the VNNI instructions give exactly the integers of
 * vpmaddubsw + vpmaddwd + vpaddd (no saturation was relied on), which the tolerance of
 * check_dots could not tell. The base per table and type:
 *   - the k-quants have native 512-bit tiles in both AVX-512 tables (kquant_x86.h), whose
 *     float sums run in another order than the 256-bit tiles: avx512_vnni's equal
 *     avx512's bit for bit, and avx512's are held to the check_dots tolerance against the
 *     double reference (no base);
 *   - the float weights (F32, F16, BF16) have 16-lane tiles in both AVX-512 tables
 *     (kernels_avx2.c): the same as the k-quants;
 *   - q4_0P has native 512-bit tiles in avx512_vnni only (tiles_avx512.h): tolerance;
 *   - everything else equals avx2.
 * (check_gemm still requires every table's gemm to equal its vec_dot bit for bit.) */
static bool is_kquant(sov_type t) { return t == SOV_TYPE_Q4_K || t == SOV_TYPE_Q5_K || t == SOV_TYPE_Q6_K; }
static bool is_float(sov_type t) { return t == SOV_TYPE_F32 || t == SOV_TYPE_F16 || t == SOV_TYPE_BF16; }

static bool bitwise_table(const char *isa) { return !strcmp(isa, "avx512") || !strcmp(isa, "avx512_vnni"); }

static const char *bitwise_base_of(const char *isa, sov_type t) {
    const bool vnni = !strcmp(isa, "avx512_vnni");
    if (is_kquant(t) || is_float(t)) return vnni ? "avx512" : NULL;
    if (vnni && t == SOV_TYPE_Q4_0P) return NULL;
    return "avx2";
}

/* |got - reference| within the check_dots tolerance (the kernels without a bitwise base) */
static bool near_ref(sov_type t, const void *w, const void *a, int64_t n, float got) {
    double mag;
    const double want = ref_dot(t, w, a, n, &mag);
    return isfinite(got) && fabs(got - want) <= 1e-5 * mag + 1e-30;
}

static void check_same_as_base(const sov_kernels *k, const sov_type *types, size_t nt) {
    if (!bitwise_table(k->isa)) return;
    enum { NR = 8, NC = 8 };
    int bad = 0;
    for (size_t ti = 0; ti < nt; ti++) {
        const sov_type t = types[ti];
        const char *base_name = bitwise_base_of(k->isa, t);
        const sov_kernels *base = base_name ? sov_kernels_by_name(base_name) : k;
        if (!base || !has_type(base, t)) continue;
        const bool exempt = !base_name; /* no base: within the reference tolerance */
        int64_t len[16];
        const size_t nl = lengths_for(t, len);
        for (size_t ci = 0; ci < SOV_ARRAY_LEN_T(dot_cases); ci++)
            for (size_t li = 0; li < nl; li++) {
                const dot_case *dc = &dot_cases[ci];
                const int64_t n = len[li];
                const size_t ldw = sov_row_size(t, n), lda = act_size(t, n);
                char *W = malloc(NR * ldw + 64), *A = malloc(NC * lda + 64);
                float *x = malloc((size_t)n * sizeof *x);
                for (int r = 0; r < NR; r++) {
                    void *q = weights(t, n, dc->mode, dc->wscale, dc->lo, dc->hi);
                    memcpy(W + (size_t)r * ldw, q, ldw);
                    free(q);
                }
                for (int c = 0; c < NC; c++) {
                    fill(x, n, dc->ascale);
                    activation_into(&sov_kernels_scalar, t, x, n, A + (size_t)c * lda);
                }
                const float d = k->vec_dot[t](n, W, A), db = base->vec_dot[t](n, W, A);
                if (exempt) {
                    if (!near_ref(t, W, A, n, d) && bad++ < 3)
                        fprintf(stderr, "%s vec_dot %s n=%lld (%s): %.9g out of tolerance (%s %.9g)\n", k->isa,
                                sov_type_name(t), (long long)n, dc->what, (double)d, base->isa, (double)db);
                } else if (memcmp(&d, &db, sizeof d) != 0 && bad++ < 3)
                    fprintf(stderr, "%s vec_dot %s n=%lld (%s): %.9g != %s %.9g\n", k->isa, sov_type_name(t),
                            (long long)n, dc->what, (double)d, base->isa, (double)db);
                float Y[NR * NC], Yb[NR * NC];
                k->gemm[t](n, W, ldw, NR, A, lda, NC, Y, NR);
                base->gemm[t](n, W, ldw, NR, A, lda, NC, Yb, NR);
                for (int i = 0; i < NR * NC; i++)
                    if (exempt) {
                        if (!near_ref(t, W + (size_t)(i % NR) * ldw, A + (size_t)(i / NR) * lda, n, Y[i]) && bad++ < 3)
                            fprintf(stderr, "%s gemm %s n=%lld (%s) [%d]: %.9g out of tolerance\n", k->isa,
                                    sov_type_name(t), (long long)n, dc->what, i, (double)Y[i]);
                    } else if (memcmp(&Y[i], &Yb[i], sizeof Y[i]) != 0 && bad++ < 3)
                        fprintf(stderr, "%s gemm %s n=%lld (%s) [%d]: %.9g != %s %.9g\n", k->isa, sov_type_name(t),
                                (long long)n, dc->what, i, (double)Y[i], base->isa, (double)Yb[i]);
                free(W);
                free(A);
                free(x);
            }
    }
    CHECK_MSG(bad == 0, "%s: %d vec_dot / gemm results differ from their base table or the reference", k->isa, bad);
    if (bad == 0)
        fprintf(stderr, "  %-12s vec_dot and gemm bit-identical with %s\n", k->isa,
                !strcmp(k->isa, "avx512_vnni")
                    ? "avx2 (k-quants and floats: with avx512; Q4_0P: within the reference tolerance)"
                    : "avx2 (k-quants and floats: within the reference tolerance)");
}

/* ---- float ops ---- */

/* GELU, tanh form, in double: g/2 (1 + tanh z), z = sqrt(2/pi) (g + 0.044715 g^3). Written
 * as g / (1 + e^-2z), the same value, because 1 + tanh z cancels to 0 even in double for
 * z < -19; the two forms are checked against each other where both are exact enough. */
static double gelu_tanh_ref(double g) {
    const double z = 0.79788456080286535588 /* sqrt(2/pi) */ * (g + 0.044715 * g * g * g);
    return g / (1.0 + exp(-2.0 * z));
}

/* The relative tolerance of gelu_mul at g: for g < 0 the value is about g e^(2z), so a
 * relative rounding error e in the argument 2z (a cube, a product, a sum: a few ulp)
 * becomes |2z| e in the result; 1e-6 (2 + 2|z|) covers that with room. */
static double gelu_tol(double g) {
    return 1e-6 * (2.0 + 2.0 * fabs(0.79788456080286535588 * (g + 0.044715 * g * g * g)));
}

/* |a - b| <= rel * |b| + abs */
static bool near(double a, double b, double rel, double abs_tol) { return fabs(a - b) <= rel * fabs(b) + abs_tol; }
static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void check_float_ops(const sov_kernels *k) {
    const sov_kernels *s = &sov_kernels_scalar;
    static const int64_t sizes[] = {1, 3, 7, 8, 9, 13, 16, 17, 64, 172, 1000, 4097};
    for (size_t si = 0; si < SOV_ARRAY_LEN_T(sizes); si++) {
        const int64_t n = sizes[si];
        const size_t fb = (size_t)n * sizeof(float);
        float *x = malloc(fb), *w = malloc(fb), *y1 = malloc(fb), *y2 = malloc(fb), *z = malloc(fb);
        sov_half *h1 = malloc((size_t)n * 2), *h2 = malloc((size_t)n * 2);
        fill(x, n, 3.0f);
        fill(w, n, 1.0f);
        int bad = 0;
#define EACH(what, cond)                                                                    \
    do {                                                                                    \
        int b_ = 0;                                                                         \
        for (int64_t i = 0; i < n; i++) b_ += !(cond);                                     \
        if (b_) fprintf(stderr, "%s %s n=%lld: %d values wrong\n", k->isa, what, (long long)n, b_); \
        bad += b_;                                                                          \
    } while (0)

        /* rmsnorm: y = x / sqrt(mean(x^2) + eps) * w. float: the sum of squares (rel.
         * error ~1e-7 even in float lanes), the inverse and two products: 1e-6 */
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
        const double inv = 1.0 / sqrt(ss / (double)n + 1e-5);
        k->rmsnorm(y2, x, w, n, 1e-5f);
        EACH("rmsnorm", near(y2[i], x[i] * inv * w[i], 1e-6, 1e-30));
        s->rmsnorm(y1, x, w, n, 1e-5f);
        EACH("rmsnorm vs scalar", near(y2[i], y1[i], 2e-6, 1e-30));
        memcpy(z, x, fb);
        k->rmsnorm(z, z, w, n, 1e-5f); /* in place */
        EACH("rmsnorm in place", same_bits(z[i], y2[i]));

        /* silu_mul: g / (1 + e^-g) * u; exp within a few ulp (vectorised polynomial),
         * a division and a product: 1e-6, and 1e-30 absolute for results near 0 */
        k->silu_mul(y2, x, w, n);
        EACH("silu_mul", near(y2[i], x[i] / (1.0 + exp(-(double)x[i])) * w[i], 1e-6, 1e-30));

        /* layernorm: (x - mean) / sqrt(var + eps) * w + b. The mean and the variance in
         * float lanes (rel. ~1e-7), the inverse, a product and an FMA with b: 2e-6 of
         * |normalised x * w| + |b|; in place bitwise equal to out of place */
        {
            float *bias = malloc(fb);
            fill(bias, n, 0.5f);
            double mean = 0, var = 0;
            for (int64_t i = 0; i < n; i++) mean += x[i];
            mean /= (double)n;
            for (int64_t i = 0; i < n; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
            const double linv = 1.0 / sqrt(var / (double)n + 1e-5);
            k->layernorm(y2, x, w, bias, n, 1e-5f);
            EACH("layernorm", fabs(y2[i] - (((double)x[i] - mean) * linv * w[i] + bias[i])) <=
                                  2e-6 * (fabs(((double)x[i] - mean) * linv * w[i]) + fabs(bias[i])) + 1e-6);
            s->layernorm(y1, x, w, bias, n, 1e-5f);
            EACH("layernorm vs scalar", fabs(y2[i] - y1[i]) <= 4e-6 * (fabs(y1[i]) + fabs(bias[i])) + 1e-6);
            memcpy(z, x, fb);
            k->layernorm(z, z, w, bias, n, 1e-5f);
            EACH("layernorm in place", same_bits(z[i], y2[i]));
            free(bias);
        }

        /* gelu_erf: x (1 + erf(x / sqrt 2)) / 2 against double erf. The SIMD erf is a
         * polynomial with |error| < 1.5e-7 (+ float rounding): 4e-7 of |x| + 1e-6 of
         * the result; in place bitwise equal to out of place */
        k->gelu_erf(y2, x, n);
        EACH("gelu_erf", fabs(y2[i] - 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)))) <=
                             4e-7 * fabs(x[i]) + 1e-6 * fabs(0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)))) + 1e-30);
        s->gelu_erf(y1, x, n);
        EACH("gelu_erf vs scalar", fabs(y2[i] - y1[i]) <= 4e-7 * fabs(x[i]) + 2e-6 * fabs(y1[i]) + 1e-30);
        memcpy(z, x, fb);
        k->gelu_erf(z, z, n);
        EACH("gelu_erf in place", same_bits(z[i], y2[i]));

        /* gelu_mul: the tanh form in double, g/2 (1 + tanh(sqrt(2/pi)(g + 0.044715 g^3))) * u,
         * against the kernel's g / (1 + e^-2z): exp within a few ulp, and the argument's
         * roundings amplified by |2z| where the value is small (gelu_tol) */
        k->gelu_mul(y2, x, w, n);
        EACH("gelu_mul", near(y2[i], gelu_tanh_ref(x[i]) * w[i], gelu_tol(x[i]), 1e-30));
        s->gelu_mul(y1, x, w, n);
        EACH("gelu_mul vs scalar", near(y2[i], y1[i], 2 * gelu_tol(x[i]), 1e-30));

        /* softmax: exp as above, a float sum of up to n/8 positive terms per lane: 1e-5 */
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++) mx = fmax(mx, x[i]);
        for (int64_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
        memcpy(y2, x, fb);
        k->softmax(y2, n);
        EACH("softmax", near(y2[i], exp((double)x[i] - mx) / sum, 1e-5, 1e-30));

        /* add and scale are single IEEE operations: exactly the float result */
        memcpy(y2, x, fb);
        k->add(y2, w, n);
        EACH("add", same_bits(y2[i], x[i] + w[i]));
        memcpy(y1, y2, fb);
        k->scale(y2, 0.37f, n);
        EACH("scale", same_bits(y2[i], y1[i] * 0.37f));

        /* axpy: y + a*x with one or two roundings (FMA or not): 2^-23 of |y| + |a x| */
        memcpy(y1, x, fb);
        memcpy(y2, x, fb);
        k->axpy_f32(y2, -1.5f, w, n);
        EACH("axpy_f32", fabs(y2[i] - (y1[i] - 1.5 * w[i])) <= 0x1p-23 * (fabs(y1[i]) + 1.5 * fabs(w[i])));

        /* f32_to_f16: bit for bit (round half to even) */
        s->f32_to_f16(h1, x, n);
        k->f32_to_f16(h2, x, n);
        EACH("f32_to_f16", h1[i] == h2[i] && h1[i] == sov_f32_to_half(x[i]));

        memcpy(y1, x, fb);
        memcpy(y2, x, fb);
        k->axpy_f16(y2, 0.25f, h1, n);
        EACH("axpy_f16",
             fabs(y2[i] - (y1[i] + 0.25 * sov_half_to_f32(h1[i]))) <=
                 0x1p-23 * (fabs(y1[i]) + 0.25 * fabs(sov_half_to_f32(h1[i]))));
#undef EACH
        CHECK_MSG(bad == 0, "%s float ops n=%lld: %d values out of tolerance", k->isa, (long long)n, bad);

        /* dot_f32 / dot_f16: as the weight dots, 1e-5 of sum |a_i b_i| */
        double d32 = 0, m32 = 0, d16 = 0, m16 = 0;
        for (int64_t i = 0; i < n; i++) {
            d32 += (double)x[i] * w[i];
            m32 += fabs((double)x[i] * w[i]);
            d16 += (double)sov_half_to_f32(h1[i]) * w[i];
            m16 += fabs((double)sov_half_to_f32(h1[i]) * w[i]);
        }
        const float e32 = k->dot_f32(x, w, n), e16 = k->dot_f16(h1, w, n);
        CHECK_MSG(fabs(e32 - d32) <= 1e-5 * m32 + 1e-30, "%s dot_f32 n=%lld: %.9g vs %.9g", k->isa, (long long)n,
                  (double)e32, d32);
        CHECK_MSG(fabs(e16 - d16) <= 1e-5 * m16 + 1e-30, "%s dot_f16 n=%lld: %.9g vs %.9g", k->isa, (long long)n,
                  (double)e16, d16);
        free(x);
        free(w);
        free(y1);
        free(y2);
        free(z);
        free(h1);
        free(h2);
    }

    /* f32 -> f16 special values, in a vector-sized run and in the tail */
    static const float special[] = {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e9f,
                                    0x1p-24f, 0x1p-25f, 0x1.8p-25f, 0x1.8p-24f, 0x1p-14f, 0x1.ffcp-15f, 1.00048828125f,
                                    1.00146484375f, INFINITY, -INFINITY, 1e-30f, -3.14159f};
    enum { NS = sizeof special / sizeof special[0] };
    float sp[NS + 2];
    memcpy(sp, special, sizeof special);
    sp[NS] = sov_bits_to_f32(0x7fc00001u);     /* quiet NaN with payload */
    sp[NS + 1] = sov_bits_to_f32(0xffa00000u); /* signalling NaN, negative */
    sov_half ha[NS + 2], hb[NS + 2];
    k->f32_to_f16(ha, sp, NS + 2);
    for (int i = 0; i < NS + 2; i++) {
        hb[i] = sov_f32_to_half(sp[i]);
        const bool nan = (hb[i] & 0x7c00) == 0x7c00 && (hb[i] & 0x3ff);
        /* NaN: any quiet NaN of the same sign will do */
        CHECK_MSG(nan ? ((ha[i] & 0xfe00) == (hb[i] & 0xfe00)) : ha[i] == hb[i], "%s f32_to_f16(%a) = %04x, want %04x",
                  k->isa, (double)sp[i], ha[i], hb[i]);
    }

    /* softmax: a masked (-inf) entry, one dominant value, n = 1, all equal */
    float v[9] = {1, 2, -INFINITY, 3, 4, 5, 80, 7, 8};
    k->softmax(v, 9);
    CHECK(v[2] == 0.0f && near(v[6], 1.0, 1e-6, 0) && near(v[5], exp(5.0 - 80.0), 1e-5, 1e-40));
    float one = -3.0f;
    k->softmax(&one, 1);
    CHECK(one == 1.0f);
    float eq[11];
    for (int i = 0; i < 11; i++) eq[i] = 2.5f;
    k->softmax(eq, 11);
    for (int i = 0; i < 11; i++) CHECK(near(eq[i], 1.0 / 11, 1e-6, 0));
    /* silu at the ends of exp's range: finite, ~0 for very negative, ~g for very positive */
    float g[9] = {-200.0f, -89.0f, -88.0f, -20.0f, 0.0f, 20.0f, 88.0f, 89.0f, 200.0f}, u[9], o[9];
    for (int i = 0; i < 9; i++) u[i] = 1.0f;
    k->silu_mul(o, g, u, 9);
    for (int i = 0; i < 9; i++)
        CHECK_MSG(isfinite(o[i]) && near(o[i], g[i] / (1.0 + exp(-(double)g[i])), 1e-6, 1e-30), "%s silu(%g) = %g",
                  k->isa, (double)g[i], (double)o[i]);
    /* gelu the same: ~0 far left (where the tanh form's 1 + tanh cancels), ~g far right,
     * and g^3 overflowing float (|g| = 1e13) still finite */
    for (double gv = -6.0; gv <= 6.0; gv += 0.25) {
        const double zv = 0.79788456080286535588 * (gv + 0.044715 * gv * gv * gv);
        CHECK(near(gelu_tanh_ref(gv), 0.5 * gv * (1.0 + tanh(zv)), 1e-9, 1e-12));
    }
    float gg[11] = {-1e13f, -200.0f, -12.0f, -3.0f, -0.5f, 0.0f, 1e-3f, 0.5f, 3.0f, 200.0f, 1e13f}, go[11], gu[11];
    for (int i = 0; i < 11; i++) gu[i] = 1.0f;
    k->gelu_mul(go, gg, gu, 11);
    for (int i = 0; i < 11; i++)
        CHECK_MSG(isfinite(go[i]) && near(go[i], gelu_tanh_ref(gg[i]), gelu_tol(gg[i]), 1e-30), "%s gelu(%g) = %g", k->isa,
                  (double)gg[i], (double)go[i]);
}

/* ---- the scalar reference on known values ---- */

static void scalar_reference_is_exact_on_known_values(void) {
    /* values on the grids exactly: weights 63.5 (scale 0.5, level 127), activations 127
     * (scale 1): 64 products of 63.5 * 127 */
    float w[64], x[64];
    for (int i = 0; i < 64; i++) w[i] = 63.5f, x[i] = 127.0f;
    void *wq = weights(SOV_TYPE_Q8_0, 64, W_QUANTIZED, 0, 0, 0);
    CHECK(sov_quantize_row(SOV_TYPE_Q8_0, w, wq, 64));
    void *a = activation(&sov_kernels_scalar, SOV_TYPE_Q8_0, x, 64);
    CHECK_NEAR(sov_kernels_scalar.vec_dot[SOV_TYPE_Q8_0](64, wq, a), 64 * 63.5 * 127, 0);
    free(a);
    /* q4_0: levels -8..7 of scale 1 (max magnitude -8), times activations of 127 */
    for (int i = 0; i < 64; i++) w[i] = (float)(i % 16 - 8);
    CHECK(sov_quantize_row(SOV_TYPE_Q4_0, w, wq, 64));
    a = activation(&sov_kernels_scalar, SOV_TYPE_Q4_0, x, 64);
    double want = 0;
    for (int i = 0; i < 64; i++) want += w[i] * 127.0;
    CHECK_NEAR(sov_kernels_scalar.vec_dot[SOV_TYPE_Q4_0](64, wq, a), want, 0);
    free(wq);
    free(a);
}

/* ---- attention over a block ---- */

/* attn_scores / attn_values of one KV block for nq query heads, f16 and f32, against a
 * double reference over the exact inputs: shapes with the usual head counts and sizes and
 * odd ones (block sizes not a multiple of any vector width, head dims not a multiple of
 * 8, nq that leaves a remainder after groups of 8 and 4, partial blocks n < bs). Scores
 * past n are never written (sentinels), stale keys in slots n..bs-1 (huge values here)
 * never reach a result. Tolerance: the bound of a float sum of m terms in any order,
 * (m + 2) 2^-24 sum |term| (m - 1 additions, the product's and the scale's rounding); a
 * wrong or missing term moves the result by about that term, far more. */
static void check_attention(const sov_kernels *k) {
    static const int shapes[][2] = {{16, 64}, {16, 128}, {32, 64}, {8, 64}, {16, 80}, {12, 64}, {16, 20}, {5, 8}};
    static const int heads[] = {1, 3, 4, 5, 8, 9, 12};
    int bad = 0, cases = 0;
    for (size_t si = 0; si < SOV_ARRAY_LEN_T(shapes); si++)
        for (size_t hi = 0; hi < SOV_ARRAY_LEN_T(heads); hi++)
            for (int f16 = 0; f16 < 2; f16++) {
                const int bs = shapes[si][0], d = shapes[si][1], nq = heads[hi];
                const int n = 1 + (int)rnd((uint64_t)bs);
                const size_t ldsc = (size_t)bs + 3;
                float *q = malloc((size_t)nq * d * sizeof *q), *kf = malloc((size_t)bs * d * sizeof *kf);
                float *vf = malloc((size_t)bs * d * sizeof *vf), *sc = malloc((size_t)nq * ldsc * sizeof *sc);
                float *out = malloc((size_t)nq * d * sizeof *out), *out0 = malloc((size_t)nq * d * sizeof *out0);
                sov_half *kh = malloc((size_t)bs * d * sizeof *kh), *vh = malloc((size_t)bs * d * sizeof *vh);
                fill(q, (int64_t)nq * d, 1.0f);
                for (int i = 0; i < bs * d; i++) {
                    /* transposed keys: dimension i / bs of slot i % bs; stale slots huge */
                    const bool stale = i % bs >= n;
                    kh[i] = sov_f32_to_half(stale ? 6.0e4f : test_rng_float(&rng) * 2.0f);
                    vh[i] = sov_f32_to_half(test_rng_float(&rng) * 2.0f);
                    kf[i] = stale ? 3.0e38f : sov_half_to_f32(kh[i]);
                    vf[i] = sov_half_to_f32(vh[i]);
                }
                for (size_t i = 0; i < (size_t)nq * ldsc; i++) sc[i] = -7.0f;
                const float scale = 0.125f;
                if (f16) k->attn_scores_f16(sc, ldsc, q, nq, kh, n, bs, d, scale, nq % 2 ? vh : NULL); /* a hint or none */
                else k->attn_scores_f32(sc, ldsc, q, nq, kf, n, bs, d, scale);
                for (int h = 0; h < nq; h++)
                    for (int j = 0; j < (int)ldsc; j++) {
                        const float got = sc[(size_t)h * ldsc + j];
                        if (j >= n) {
                            if (got != -7.0f && bad++ < 3)
                                fprintf(stderr, "%s attn_scores_%s bs=%d d=%d nq=%d n=%d: score %d,%d written\n", k->isa,
                                        f16 ? "f16" : "f32", bs, d, nq, n, h, j);
                            continue;
                        }
                        double want = 0, mag = 0;
                        for (int i = 0; i < d; i++) {
                            const double t = (double)q[(size_t)h * d + i] * kf[(size_t)i * bs + j];
                            want += t;
                            mag += fabs(t);
                        }
                        want *= scale;
                        if (!(fabs(got - want) <= (d + 2) * 0x1p-24 * mag * scale + 1e-30) && bad++ < 3)
                            fprintf(stderr, "%s attn_scores_%s bs=%d d=%d nq=%d n=%d [%d,%d]: %.9g, want %.9g\n", k->isa,
                                    f16 ? "f16" : "f32", bs, d, nq, n, h, j, (double)got, want);
                    }
                /* values: the probabilities are the scores' row, any floats will do */
                fill(out0, (int64_t)nq * d, 1.0f);
                memcpy(out, out0, (size_t)nq * d * sizeof *out);
                for (int h = 0; h < nq; h++)
                    for (int j = 0; j < n; j++) sc[(size_t)h * ldsc + j] = test_rng_float(&rng);
                if (f16) k->attn_values_f16(out, sc, ldsc, nq, vh, n, d, nq % 2 ? kh : NULL); /* a block to prefetch, or none */
                else k->attn_values_f32(out, sc, ldsc, nq, vf, n, d);
                for (int h = 0; h < nq; h++)
                    for (int i = 0; i < d; i++) {
                        double want = out0[(size_t)h * d + i], mag = fabs(want);
                        for (int j = 0; j < n; j++) {
                            const double t = (double)sc[(size_t)h * ldsc + j] * vf[(size_t)j * d + i];
                            want += t;
                            mag += fabs(t);
                        }
                        const float got = out[(size_t)h * d + i];
                        if (!(fabs(got - want) <= (n + 3) * 0x1p-24 * mag + 1e-30) && bad++ < 3)
                            fprintf(stderr, "%s attn_values_%s d=%d nq=%d n=%d [%d,%d]: %.9g, want %.9g\n", k->isa,
                                    f16 ? "f16" : "f32", d, nq, n, h, i, (double)got, want);
                    }
                cases++;
                free(q), free(kf), free(vf), free(sc), free(out), free(out0), free(kh), free(vh);
            }
    CHECK_MSG(bad == 0, "%s attention: %d results wrong", k->isa, bad);
    if (bad == 0) fprintf(stderr, "  %-12s attention: %d block shapes within the float-sum bound of the double reference\n", k->isa, cases);
}

int main(void) {
    RUN(scalar_reference_is_exact_on_known_values);
    int tested = 0;
    for (const char *const *name = sov_kernels_names(); *name; name++) {
        const sov_kernels *k = sov_kernels_by_name(*name);
        if (!k) {
            fprintf(stderr, "SKIP %s: this CPU lacks it (or it is not built for this architecture)\n", *name);
            continue;
        }
        fprintf(stderr, "== %s\n", k->isa);
        const int before = test_failures_;
        sov_type types[SOV_ARRAY_LEN_T(required_types) + SOV_ARRAY_LEN_T(optional_types)];
        const size_t nt = types_of(k, types);
        check_quantizers(k);
        check_dots(k, types, nt);
        check_gemm(k, types, nt);
        check_same_as_base(k, types, nt);
        check_float_ops(k);
        check_attention(k);
        fprintf(stderr, "%s %s\n", test_failures_ == before ? "ok  " : "FAIL", k->isa);
        tested++;
    }
    CHECK(tested >= 1);
    TEST_EXIT();
}
