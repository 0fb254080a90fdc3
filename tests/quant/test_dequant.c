/* The block formats, pinned by hand: blocks built byte by byte with values worked out on
 * paper from each format's definition, and the dequantized floats they must give. Any
 * change to nibble order, fifth/sixth-bit placement, scale packing or the order of the
 * scale multiplications fails here. */
#include "test.h"

#include "quant/quant.h"

static sov_half h(float f) { return sov_f32_to_half(f); }

static void f16_and_bf16_convert_exactly(void) {
    const sov_half hs[] = {0x3c00, 0xc000, 0x0001, 0x7c00, 0x3555};
    float out[5];
    sov_dequantize_row(SOV_TYPE_F16, hs, out, 5);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 5.9604644775390625e-08f && isinf(out[3]));
    CHECK(out[4] == 0.33325195f);
    const sov_bf16 bs[] = {0x3f80, 0xc040, 0x0001};
    sov_dequantize_row(SOV_TYPE_BF16, bs, out, 3);
    CHECK(out[0] == 1.0f && out[1] == -3.0f && out[2] == sov_bits_to_f32(0x00010000u));
}

static void q4_0_low_nibbles_first_minus_8(void) {
    block_q4_0 b = {.d = h(0.5f)};
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q4_0, &b, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == (float)(j - 8) * 0.5f);       /* low nibble: value j */
        CHECK(y[j + 16] == (float)(7 - j) * 0.5f);  /* high nibble: value j + 16 */
    }
}

static void q4_1_adds_the_min(void) {
    block_q4_1 b = {.d = h(0.25f), .m = h(-1.0f)};
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(3 | (12 << 4));
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q4_1, &b, y, 32);
    CHECK(y[0] == 3 * 0.25f - 1.0f && y[16] == 12 * 0.25f - 1.0f);
}

static void q5_0_fifth_bit_j_for_value_j(void) {
    block_q5_0 b = {.d = h(2.0f)};
    memset(b.qs, 0x00, 16);
    const uint32_t qh = (1u << 0) | (1u << 15) | (1u << 16) | (1u << 31);
    memcpy(b.qh, &qh, 4);
    b.qs[1] = 0x5F; /* value 1 low nibble 15, value 17 high nibble 5 */
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q5_0, &b, y, 32);
    CHECK(y[0] == (16 - 16) * 2.0f);   /* bit 0 set: 0 | 16 */
    CHECK(y[1] == (15 - 16) * 2.0f);   /* no bit: 15 */
    CHECK(y[15] == (16 - 16) * 2.0f);
    CHECK(y[16] == (16 - 16) * 2.0f);  /* bit 16 is value 16's */
    CHECK(y[17] == (5 - 16) * 2.0f);
    CHECK(y[31] == (16 - 16) * 2.0f);
    CHECK(y[2] == -32.0f);
}

static void q5_1_fifth_bit_and_min(void) {
    block_q5_1 b = {.d = h(1.0f), .m = h(0.5f)};
    memset(b.qs, 0xFF, 16);
    const uint32_t qh = 0xFFFF0000u;
    memcpy(b.qh, &qh, 4);
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q5_1, &b, y, 32);
    CHECK(y[0] == 15.5f && y[16] == 31.5f);
}

static void q8_0_signed_bytes(void) {
    block_q8_0 b = {.d = h(0.125f)};
    for (int j = 0; j < 32; j++) b.qs[j] = (int8_t)(j * 8 - 128);
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q8_0, &b, y, 32);
    CHECK(y[0] == -16.0f && y[31] == (float)(31 * 8 - 128) * 0.125f);
}

/* Packs 6-bit scale and min of sub-block j the way the k-quant layout stores them. */
static void put_scale_min(uint8_t *q, int j, int sc, int m) {
    if (j < 4) {
        q[j] = (uint8_t)((q[j] & 0xC0) | sc);
        q[j + 4] = (uint8_t)((q[j + 4] & 0xC0) | m);
    } else {
        q[j + 4] = (uint8_t)((sc & 0xF) | ((m & 0xF) << 4));
        q[j - 4] |= (uint8_t)((sc >> 4) << 6);
        q[j] |= (uint8_t)((m >> 4) << 6);
    }
}

static void k_scale_packing_round_trips(void) {
    uint8_t q[12] = {0};
    const int sc[8] = {1, 63, 17, 40, 62, 33, 48, 5}, mn[8] = {2, 0, 63, 9, 31, 60, 16, 47};
    for (int j = 0; j < 8; j++) put_scale_min(q, j, sc[j], mn[j]);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        sov_k_scale_min(j, q, &s, &m);
        CHECK_EQ(s, sc[j]);
        CHECK_EQ(m, mn[j]);
    }
}

static void q4_K_sub_blocks_of_32(void) {
    block_q4_K b = {.d = h(0.5f), .dmin = h(0.25f)};
    memset(b.scales, 0, 12);
    for (int j = 0; j < 8; j++) put_scale_min(b.scales, j, j + 1, 2 * j);
    /* group g (64 values): low nibbles are sub-block 2g, high nibbles sub-block 2g+1 */
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) b.qs[32 * g + l] = (uint8_t)((l % 16) | ((15 - l % 16) << 4));
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q4_K, &b, y, 256);
    for (int s = 0; s < 8; s++)
        for (int l = 0; l < 32; l++) {
            const int q = s % 2 == 0 ? l % 16 : 15 - l % 16;
            const float want = (0.5f * (float)(s + 1)) * (float)q - 0.25f * (float)(2 * s);
            CHECK_MSG(y[32 * s + l] == want, "sub-block %d value %d: %g != %g", s, l, (double)y[32 * s + l],
                      (double)want);
        }
}

static void q5_K_fifth_bits_pair_per_group(void) {
    block_q5_K b = {.d = h(1.0f), .dmin = h(1.0f)};
    memset(b.scales, 0, 12);
    for (int j = 0; j < 8; j++) put_scale_min(b.scales, j, 1, 0);
    memset(b.qs, 0, sizeof b.qs);
    memset(b.qh, 0, sizeof b.qh);
    /* value l of sub-block 2g takes bit 2g of qh[l]; sub-block 2g+1 takes bit 2g+1 */
    b.qh[3] = (uint8_t)(1u << 0 | 1u << 5);  /* sub-block 0 value 3, sub-block 5 value 3 */
    b.qh[31] = (uint8_t)(1u << 7);           /* sub-block 7 value 31 */
    b.qs[32 * 2 + 3] = 0x70;                 /* group 2: sub-block 5 value 3 high nibble 7 */
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q5_K, &b, y, 256);
    CHECK(y[3] == 16.0f);
    CHECK(y[5 * 32 + 3] == 23.0f);
    CHECK(y[7 * 32 + 31] == 16.0f);
    CHECK(y[4] == 0.0f && y[32 + 3] == 0.0f);
}

static void q6_K_quarters_and_signed_scales(void) {
    block_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = h(0.5f);
    for (int j = 0; j < 16; j++) b.scales[j] = (int8_t)(j % 2 ? -(j + 1) : (j + 1));
    /* half 0: ql[l] low nibble = value l, ql[l] high = value l+64, ql[l+32] low = value
     * l+32, ql[l+32] high = value l+96; qh[l] bits 0-1,2-3,4-5,6-7 the top two bits of
     * values l, l+32, l+64, l+96 */
    b.ql[0] = 0x21;        /* value 0: 1, value 64: 2 */
    b.ql[32] = 0x43;       /* value 32: 3, value 96: 4 */
    b.qh[0] = 0xE4;        /* bits: value0 0b00, value32 0b01, value64 0b10, value96 0b11 */
    b.ql[64 + 17] = 0x0F;  /* half 1, value 128 + 17: low 15 */
    b.qh[32 + 17] = 0x03;  /* its top bits 0b11: 63 */
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q6_K, &b, y, 256);
    CHECK(y[0] == (0.5f * 1.0f) * (float)(1 - 32));              /* sub-block 0, scale 1 */
    CHECK(y[32] == (0.5f * 3.0f) * (float)((3 | 16) - 32));      /* sub-block 2, scale 3 */
    CHECK(y[64] == (0.5f * 5.0f) * (float)((2 | 32) - 32));      /* sub-block 4, scale 5 */
    CHECK(y[96] == (0.5f * 7.0f) * (float)((4 | 48) - 32));      /* sub-block 6, scale 7 */
    CHECK(y[128 + 17] == (0.5f * -10.0f) * (float)(63 - 32));    /* sub-block 9, scale -10 */
    CHECK(y[1] == (0.5f * 1.0f) * -32.0f);
}

static void subnormal_and_infinite_scales(void) {
    block_q8_0 b = {.d = 0x0001};
    for (int j = 0; j < 32; j++) b.qs[j] = 100;
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q8_0, &b, y, 32);
    CHECK(y[0] == 100.0f * 5.9604644775390625e-08f);
    b.d = 0x7c00;
    sov_dequantize_row(SOV_TYPE_Q8_0, &b, y, 32);
    CHECK(isinf(y[0]) && y[0] > 0);
}

int main(void) {
    RUN(f16_and_bf16_convert_exactly);
    RUN(q4_0_low_nibbles_first_minus_8);
    RUN(q4_1_adds_the_min);
    RUN(q5_0_fifth_bit_j_for_value_j);
    RUN(q5_1_fifth_bit_and_min);
    RUN(q8_0_signed_bytes);
    RUN(k_scale_packing_round_trips);
    RUN(q4_K_sub_blocks_of_32);
    RUN(q5_K_fifth_bits_pair_per_group);
    RUN(q6_K_quarters_and_signed_scales);
    RUN(subnormal_and_infinite_scales);
    TEST_EXIT();
}
