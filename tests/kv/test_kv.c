/* The paged KV cache's block pool and block tables: allocation until full, release back
 * to the pool, reservation counts, copy on write of a shared partial block, truncation;
 * hygiene: a block handed to a new owner is all zeros, and a copy on write carries only
 * the positions the new owner shares. */
#include "test.h"

#include "kv/kv.h"

static void pool_hands_out_every_block_once(void) {
    sov_kv kv;
    CHECK_EQ(kv_init(&kv, 2, 2, 8, 4, 5, SOV_KV_F16), SOV_OK);
    int seen[5] = {0};
    for (int i = 0; i < 5; i++) {
        int32_t b = kv_alloc(&kv);
        CHECK(b >= 0 && b < 5);
        if (b >= 0 && b < 5) seen[b]++;
    }
    CHECK_EQ(kv_alloc(&kv), -1);
    for (int i = 0; i < 5; i++) CHECK_EQ(seen[i], 1);
    kv_release(&kv, 3);
    CHECK_EQ(kv.n_free, 1);
    CHECK_EQ(kv_alloc(&kv), 3);
    kv_destroy(&kv);
}

static void blocks_do_not_overlap(void) {
    sov_kv kv;
    CHECK_EQ(kv_init(&kv, 3, 2, 8, 4, 4, SOV_KV_F32), SOV_OK);
    CHECK_EQ(kv.block_bytes, 3u * 2 * 4 * 8 * 4);
    CHECK_EQ(kv.v_block_bytes, kv.block_bytes);
    /* every (block, layer, head) piece is distinct and inside the mapping, and one layer's
     * and head's pieces of consecutive blocks follow each other (the stream a decode step
     * reads: kv.h) */
    const uint8_t *last = NULL, *vlast = NULL;
    for (int l = 0; l < 3; l++)
        for (int h = 0; h < 2; h++)
            for (int b = 0; b < 4; b++) {
                const uint8_t *p = kv_k(&kv, l, b, h), *v = kv_v(&kv, l, b, h);
                if (last) CHECK(p == last + kv.head_bytes);
                if (vlast) CHECK(v == vlast + kv.v_head_bytes);
                CHECK(p + kv.head_bytes <= kv.k + kv.map_bytes);
                CHECK(v + kv.v_head_bytes <= kv.v + kv.v_map_bytes);
                last = p;
                vlast = v;
            }
    CHECK(last + kv.head_bytes == kv.k + kv.map_bytes);
    kv_destroy(&kv);
}

static void reserve_counts_and_grows_the_table(void) {
    sov_kv kv;
    CHECK_EQ(kv_init(&kv, 1, 1, 2, 4, 8, SOV_KV_F16), SOV_OK);
    kv_seq s = {.live = true};
    CHECK_EQ(kv_seq_blocks_needed(&kv, &s, 1), 1);
    CHECK_EQ(kv_seq_blocks_needed(&kv, &s, 9), 3);
    CHECK_EQ(kv_seq_reserve(&kv, &s, 9), SOV_OK);
    CHECK_EQ(s.n_blocks, 3);
    s.n_pos = 9;
    CHECK_EQ(kv.n_free, 5);
    CHECK_EQ(kv_seq_blocks_needed(&kv, &s, 12), 0); /* block 2 has room up to 12 */
    CHECK_EQ(kv_seq_blocks_needed(&kv, &s, 13), 1);
    kv_seq_truncate(&kv, &s, 4);
    CHECK_EQ(s.n_blocks, 1);
    CHECK_EQ(s.n_pos, 4);
    CHECK_EQ(kv.n_free, 7);
    kv_seq_clear(&kv, &s);
    CHECK_EQ(kv.n_free, 8);
    free(s.blocks);
    kv_destroy(&kv);
}

static void shared_partial_block_is_copied_before_writing(void) {
    sov_kv kv;
    CHECK_EQ(kv_init(&kv, 1, 1, 2, 4, 8, SOV_KV_F32), SOV_OK);
    kv_seq a = {.live = true}, b = {.live = true};
    CHECK_EQ(kv_seq_reserve(&kv, &a, 6), SOV_OK);
    a.n_pos = 6;
    float *k1 = kv_k(&kv, 0, a.blocks[1], 0);
    k1[0] = 42.0f;
    /* b shares a's two blocks (as a prefix cache would), holding 6 positions */
    CHECK_EQ(kv_seq_reserve(&kv, &b, 0), SOV_OK);
    b.blocks = realloc(b.blocks, 4 * sizeof *b.blocks);
    b.cap = 4;
    for (int i = 0; i < 2; i++) {
        b.blocks[i] = a.blocks[i];
        kv_retain(&kv, a.blocks[i]);
    }
    b.n_blocks = 2;
    b.n_pos = 6;
    CHECK_EQ(kv_seq_blocks_needed(&kv, &b, 7), 1); /* the copy */
    CHECK_EQ(kv_seq_reserve(&kv, &b, 7), SOV_OK);
    CHECK(b.blocks[0] == a.blocks[0]);            /* full block still shared */
    CHECK(b.blocks[1] != a.blocks[1]);            /* partial block copied */
    CHECK(((float *)kv_k(&kv, 0, b.blocks[1], 0))[0] == 42.0f);
    CHECK_EQ(kv.ref[a.blocks[0]], 2);
    CHECK_EQ(kv.ref[a.blocks[1]], 1);
    kv_seq_clear(&kv, &a);
    kv_seq_clear(&kv, &b);
    CHECK_EQ(kv.n_free, 8);
    free(a.blocks);
    free(b.blocks);
    kv_destroy(&kv);
}

/* True when every byte of the block's keys and values is zero. */
/* a block is its share of every layer's and head's region (kv.h) */
static bool block_is_zero(const sov_kv *kv, int32_t b) {
    for (int32_t l = 0; l < kv->n_layer; l++)
        for (int32_t h = 0; h < kv->n_head_kv; h++) {
            const uint8_t *k = kv_k(kv, l, b, h), *v = kv_v(kv, l, b, h);
            for (size_t i = 0; i < kv->head_bytes; i++)
                if (k[i]) return false;
            for (size_t i = 0; i < kv->v_head_bytes; i++)
                if (v[i]) return false;
        }
    return true;
}

static void fill_block(sov_kv *kv, int32_t b, uint8_t byte) {
    for (int32_t l = 0; l < kv->n_layer; l++)
        for (int32_t h = 0; h < kv->n_head_kv; h++) {
            memset(kv_k(kv, l, b, h), byte, kv->head_bytes);
            memset(kv_v(kv, l, b, h), byte, kv->v_head_bytes);
        }
}

static void released_block_is_zero_when_reused(void) {
    sov_kv kv;
    CHECK_EQ(kv_init(&kv, 2, 2, 8, 4, 3, SOV_KV_F16), SOV_OK);
    const int32_t b = kv_alloc(&kv);
    fill_block(&kv, b, 0xab); /* request A's keys and values */
    kv_retain(&kv, b);        /* shared (a prefix cache holds it) */
    kv_release(&kv, b);
    CHECK(!block_is_zero(&kv, b)); /* still in use: untouched */
    kv_release(&kv, b);
    const int32_t again = kv_alloc(&kv); /* the pool hands the same block out first */
    CHECK_EQ(again, b);
    CHECK(block_is_zero(&kv, again)); /* request B never sees A's data */
    /* the same through a sequence's block table */
    kv_seq s = {.live = true};
    CHECK_EQ(kv_seq_reserve(&kv, &s, 8), SOV_OK);
    for (int32_t i = 0; i < s.n_blocks; i++) fill_block(&kv, s.blocks[i], 0x5c);
    s.n_pos = 8;
    kv_seq_truncate(&kv, &s, 3); /* block 1 goes back */
    CHECK_EQ(kv.n_free, 1);
    const int32_t freed = kv_alloc(&kv);
    CHECK(block_is_zero(&kv, freed));
    kv_release(&kv, freed);
    kv_seq_clear(&kv, &s);
    for (int32_t i = 0; i < kv.n_blocks; i++)
        CHECK(kv.ref[i] > 0 || block_is_zero(&kv, i));
    free(s.blocks);
    kv_destroy(&kv);
}

static void copy_on_write_copies_only_the_shared_positions(void) {
    sov_kv kv;
    const int32_t L = 2, H = 2, D = 3, BS = 4;
    CHECK_EQ(kv_init(&kv, L, H, D, BS, 4, SOV_KV_F32), SOV_OK);
    /* request A filled a whole block: every slot of every head non-zero */
    kv_seq a = {.live = true};
    CHECK_EQ(kv_seq_reserve(&kv, &a, BS), SOV_OK);
    a.n_pos = BS;
    for (int32_t l = 0; l < L; l++)
        for (int32_t h = 0; h < H; h++)
            for (int32_t i = 0; i < BS * D; i++) {
                ((float *)kv_k(&kv, l, a.blocks[0], h))[i] = 1.0f + (float)i;
                ((float *)kv_v(&kv, l, a.blocks[0], h))[i] = 100.0f + (float)i;
            }
    /* request B shares only its first 2 positions (a prefix cache's partial match) */
    kv_seq b = {.live = true, .blocks = malloc(4 * sizeof(int32_t)), .cap = 4};
    b.blocks[0] = a.blocks[0];
    kv_retain(&kv, a.blocks[0]);
    b.n_blocks = 1;
    b.n_pos = 2;
    CHECK_EQ(kv_seq_reserve(&kv, &b, 3), SOV_OK);
    CHECK(b.blocks[0] != a.blocks[0]);
    for (int32_t l = 0; l < L; l++)
        for (int32_t h = 0; h < H; h++) {
            const float *k = kv_k(&kv, l, b.blocks[0], h), *v = kv_v(&kv, l, b.blocks[0], h);
            for (int32_t d = 0; d < D; d++)
                for (int32_t slot = 0; slot < BS; slot++) {
                    const float want_k = slot < 2 ? 1.0f + (float)(d * BS + slot) : 0.0f;
                    const float want_v = slot < 2 ? 100.0f + (float)(slot * D + d) : 0.0f;
                    CHECK_MSG(k[d * BS + slot] == want_k, "layer %d head %d key dim %d slot %d: %g", l, h, d, slot,
                              (double)k[d * BS + slot]);
                    CHECK_MSG(v[slot * D + d] == want_v, "layer %d head %d value dim %d slot %d: %g", l, h, d,
                              slot, (double)v[slot * D + d]);
                }
        }
    kv_seq_clear(&kv, &a);
    kv_seq_clear(&kv, &b);
    free(a.blocks);
    free(b.blocks);
    kv_destroy(&kv);
}

/* Quantized keys are stored by position like the values: a copy on write carries the
 * first n rows of both, byte for byte, and nothing after them. */
static void copy_on_write_of_quantized_rows(void) {
    sov_kv kv;
    const int32_t L = 2, H = 2, D = 64, BS = 4;
    CHECK_EQ(kv_init_types(&kv, L, H, D, BS, 4, SOV_KV_Q8_0, SOV_KV_Q4_0), SOV_OK);
    CHECK_EQ(kv.k_row, 2u * (2 + 32));     /* two groups of an f16 scale and 32 int8 */
    CHECK_EQ(kv.v_row, 2u * (2 + 16));     /* two groups of an f16 scale and 32 nibbles */
    CHECK_EQ(kv.block_bytes, (size_t)L * H * BS * kv.k_row);
    CHECK_EQ(kv.v_block_bytes, (size_t)L * H * BS * kv.v_row);
    kv_seq a = {.live = true};
    CHECK_EQ(kv_seq_reserve(&kv, &a, BS), SOV_OK);
    a.n_pos = BS;
    for (int32_t l = 0; l < L; l++)
        for (int32_t h = 0; h < H; h++) {
            memset(kv_k(&kv, l, a.blocks[0], h), 0x11 + l * 2 + h, kv.head_bytes);
            memset(kv_v(&kv, l, a.blocks[0], h), 0x51 + l * 2 + h, kv.v_head_bytes);
        }
    kv_seq b = {.live = true, .blocks = malloc(4 * sizeof(int32_t)), .cap = 4};
    b.blocks[0] = a.blocks[0];
    kv_retain(&kv, a.blocks[0]);
    b.n_blocks = 1;
    b.n_pos = 3;
    CHECK_EQ(kv_seq_reserve(&kv, &b, 4), SOV_OK);
    CHECK(b.blocks[0] != a.blocks[0]);
    for (int32_t l = 0; l < L; l++)
        for (int32_t h = 0; h < H; h++) {
            const uint8_t *k = kv_k(&kv, l, b.blocks[0], h), *v = kv_v(&kv, l, b.blocks[0], h);
            int wrong = 0;
            for (size_t i = 0; i < kv.head_bytes; i++) wrong += k[i] != (i < 3 * kv.k_row ? 0x11 + l * 2 + h : 0);
            for (size_t i = 0; i < kv.v_head_bytes; i++) wrong += v[i] != (i < 3 * kv.v_row ? 0x51 + l * 2 + h : 0);
            CHECK_MSG(wrong == 0, "layer %d head %d: %d bytes wrong", l, h, wrong);
        }
    kv_seq_clear(&kv, &a);
    kv_seq_clear(&kv, &b);
    free(a.blocks);
    free(b.blocks);
    kv_destroy(&kv);
}

/* Head sizes a quantized row cannot hold are refused with a message, not misread. */
static void quantized_types_need_a_group_size(void) {
    sov_kv kv;
    CHECK_EQ(kv_group(8), 8);
    CHECK_EQ(kv_group(64), 32);
    CHECK_EQ(kv_group(48), 0);
    CHECK_EQ(kv_row_bytes(SOV_KV_Q4_0, 8), 2u + 4);
    CHECK_EQ(kv_init_types(&kv, 1, 1, 48, 16, 2, SOV_KV_Q8_0, SOV_KV_F16), SOV_ERR_ARG);
    CHECK_EQ(kv_init_types(&kv, 1, 1, 48, 16, 2, SOV_KV_F16, SOV_KV_F16), SOV_OK);
    kv_destroy(&kv);
    sov_kv_type t;
    CHECK(kv_type_parse("q4_0", &t) && t == SOV_KV_Q4_0);
    CHECK(!kv_type_parse("default", &t) && !kv_type_parse("q5_0", &t));
}

int main(void) {
    RUN(pool_hands_out_every_block_once);
    RUN(blocks_do_not_overlap);
    RUN(reserve_counts_and_grows_the_table);
    RUN(shared_partial_block_is_copied_before_writing);
    RUN(released_block_is_zero_when_reused);
    RUN(copy_on_write_copies_only_the_shared_positions);
    RUN(copy_on_write_of_quantized_rows);
    RUN(quantized_types_need_a_group_size);
    TEST_EXIT();
}
