/* The paged KV cache's block pool and block tables: allocation until full, release back
 * to the pool, reservation counts, copy on write of a shared partial block, truncation. */
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
    /* every (block, layer, head) region is distinct and inside the mapping */
    const uint8_t *last = NULL;
    for (int b = 0; b < 4; b++)
        for (int l = 0; l < 3; l++)
            for (int h = 0; h < 2; h++) {
                const uint8_t *p = kv_k(&kv, l, b, h);
                if (last) CHECK(p == last + kv.head_bytes);
                CHECK(p + kv.head_bytes <= kv.k + kv.map_bytes);
                last = p;
            }
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

int main(void) {
    RUN(pool_hands_out_every_block_once);
    RUN(blocks_do_not_overlap);
    RUN(reserve_counts_and_grows_the_table);
    RUN(shared_partial_block_is_copied_before_writing);
    TEST_EXIT();
}
