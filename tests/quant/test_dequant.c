/* The block formats, pinned by hand: blocks built byte by byte, with the floats they must
 * dequantize to worked out on paper from each format's definition (ggml's layouts). The
 * expected values are literals or follow from literals by exact arithmetic (small
 * integers times powers of two), so the checks are exact. Any change to nibble order,
 * fifth/sixth-bit placement, the packing of k-quant scales and mins (sub-blocks 0-3 and
 * the split 4-7), q6_K's ql/qh/scales layout, the sign of scales or the order of the
 * scale multiplications fails here. */
#include "test.h"

#include "quant/quant.h"

static sov_half h(float f) { return sov_f32_to_half(f); }

static void f16_and_bf16_convert_exactly(void) {
    const sov_half hs[] = {0x3c00, 0xc000, 0x0001, 0x7c00, 0x3555, 0x8001, 0x7bff, 0x0400, 0xfc00, 0x03ff, 0x7e00};
    float out[11];
    sov_dequantize_row(SOV_TYPE_F16, hs, out, 11);
    CHECK(out[0] == 1.0f && out[1] == -2.0f);
    CHECK(out[2] == 0x1p-24f);             /* smallest subnormal */
    CHECK(isinf(out[3]) && out[3] > 0);
    CHECK(out[4] == 0x1.554p-2f);          /* 0.333251953125 */
    CHECK(out[5] == -0x1p-24f);
    CHECK(out[6] == 65504.0f);             /* largest finite */
    CHECK(out[7] == 0x1p-14f);             /* smallest normal */
    CHECK(isinf(out[8]) && out[8] < 0);
    CHECK(out[9] == 0x1.ff8p-15f);         /* largest subnormal: 1023 x 2^-24 */
    CHECK(isnan(out[10]));
    const sov_bf16 bs[] = {0x3f80, 0xc040, 0x0001, 0x7f80, 0xffc0, 0x4049, 0x8000};
    sov_dequantize_row(SOV_TYPE_BF16, bs, out, 7);
    CHECK(out[0] == 1.0f && out[1] == -3.0f);
    CHECK(out[2] == 0x1p-133f); /* float subnormal 0x00010000 */
    CHECK(isinf(out[3]) && isnan(out[4]));
    CHECK(out[5] == 3.140625f);
    CHECK(out[6] == 0.0f && signbit(out[6]));
}

static void q4_0_low_nibbles_first_minus_8(void) {
    block_q4_0 b = {.d = h(0.5f)};
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q4_0, &b, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == (float)(j - 8) * 0.5f);      /* low nibble: value j */
        CHECK(y[j + 16] == (float)(7 - j) * 0.5f); /* high nibble: value j + 16 */
    }
    CHECK(y[0] == -4.0f && y[15] == 3.5f && y[16] == 3.5f && y[31] == -4.0f);
    /* a negative scale flips every value: level 0 (-8) becomes +4 */
    b.d = h(-0.5f);
    sov_dequantize_row(SOV_TYPE_Q4_0, &b, y, 32);
    CHECK(y[0] == 4.0f && y[8] == 0.0f && y[15] == -3.5f && y[31] == 4.0f);
}

static void q4_1_adds_the_min(void) {
    block_q4_1 b = {.d = h(0.25f), .m = h(-1.0f)};
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(3 | (12 << 4));
    b.qs[5] = 0xF0; /* value 5: 0, value 21: 15 */
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q4_1, &b, y, 32);
    CHECK(y[0] == -0.25f && y[16] == 2.0f); /* 3/4 - 1, 12/4 - 1 */
    CHECK(y[5] == -1.0f && y[21] == 2.75f);
    b.m = h(2.5f);
    sov_dequantize_row(SOV_TYPE_Q4_1, &b, y, 32);
    CHECK(y[0] == 3.25f && y[21] == 6.25f);
}

static void q5_0_fifth_bit_j_for_value_j(void) {
    block_q5_0 b = {.d = h(2.0f)};
    memset(b.qs, 0x00, 16);
    /* qh as a little-endian 32-bit word: bits 0, 15, 16, 31 */
    b.qh[0] = 0x01;
    b.qh[1] = 0x80;
    b.qh[2] = 0x01;
    b.qh[3] = 0x80;
    b.qs[1] = 0x5F; /* value 1 low nibble 15, value 17 high nibble 5 */
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q5_0, &b, y, 32);
    CHECK(y[0] == 0.0f);          /* bit 0 set: 16 - 16 */
    CHECK(y[1] == -2.0f);         /* 15 - 16, no fifth bit */
    CHECK(y[15] == 0.0f);         /* bit 15 */
    CHECK(y[16] == 0.0f);         /* bit 16 is value 16's */
    CHECK(y[17] == -22.0f);       /* 5 - 16 */
    CHECK(y[31] == 0.0f);         /* bit 31 */
    CHECK(y[2] == -32.0f && y[30] == -32.0f);
}

static void q5_1_fifth_bit_and_min(void) {
    block_q5_1 b = {.d = h(1.0f), .m = h(0.5f)};
    memset(b.qs, 0xFF, 16);
    b.qh[0] = b.qh[1] = 0x00;
    b.qh[2] = b.qh[3] = 0xFF; /* fifth bits of values 16..31 */
    b.qs[4] = 0x3A;           /* value 4: 10, value 20: 3 | 16 */
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q5_1, &b, y, 32);
    CHECK(y[0] == 15.5f && y[15] == 15.5f && y[16] == 31.5f && y[31] == 31.5f);
    CHECK(y[4] == 10.5f && y[20] == 19.5f);
}

static void q8_0_signed_bytes(void) {
    block_q8_0 b = {.d = h(0.125f)};
    for (int j = 0; j < 32; j++) b.qs[j] = (int8_t)(j * 8 - 128);
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q8_0, &b, y, 32);
    CHECK(y[0] == -16.0f);                  /* -128 is a valid level */
    CHECK(y[16] == 0.0f && y[31] == 15.0f); /* 120 / 8 */
}

/* 12 bytes worked by hand: j < 4 takes the low 6 bits of byte j (scale) and byte j+4
 * (min); j >= 4 takes the nibbles of byte j+4 (scale low, min high) and, as bits 4-5,
 * the top two bits of byte j-4 (scale) and byte j (min). */
static const uint8_t kscales[12] = {0xC1, 0x3F, 0x85, 0x40, 0x02, 0xFF, 0x00, 0x7A, 0x21, 0xF3, 0x5C, 0x0E};
static const int ksc[8] = {1, 63, 5, 0, 49, 3, 44, 30}; /* 49 = 0x1 | 3 << 4; 44 = 0xC | 2 << 4; 30 = 0xE | 1 << 4 */
static const int kmn[8] = {2, 63, 0, 58, 2, 63, 5, 16}; /* 63 = 0xF | 3 << 4; 16 = 0x0 | 1 << 4 */

static void k_scales_unpack_from_hand_packed_bytes(void) {
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        sov_k_scale_min(j, kscales, &s, &m);
        CHECK_EQ(s, ksc[j]);
        CHECK_EQ(m, kmn[j]);
    }
}

static void q4_K_sub_blocks_of_32(void) {
    block_q4_K b = {.d = h(0.5f), .dmin = h(0.25f)};
    memcpy(b.scales, kscales, 12);
    /* group g (64 values) in bytes 32g..32g+31: low nibbles are sub-block 2g, high
     * nibbles sub-block 2g+1 */
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) b.qs[32 * g + l] = (uint8_t)((l % 16) | ((15 - l % 16) << 4));
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q4_K, &b, y, 256);
    /* by hand: value = 0.5 sc q - 0.25 m */
    CHECK(y[0] == -0.5f);            /* sub-block 0: q 0, sc 1, m 2 */
    CHECK(y[32] == 456.75f);         /* sub-block 1: q 15 (high nibble of byte 0), sc 63, m 63 */
    CHECK(y[3 * 32 + 10] == -14.5f); /* sub-block 3: sc 0, m 58 */
    CHECK(y[4 * 32 + 7] == 171.0f);  /* sub-block 4: q 7 (low nibble of byte 64 + 7), sc 49, m 2 */
    CHECK(y[5 * 32 + 2] == 3.75f);   /* sub-block 5: q 13, sc 3, m 63 */
    CHECK(y[6 * 32 + 20] == 86.75f); /* sub-block 6: q 4, sc 44, m 5 */
    CHECK(y[7 * 32 + 31] == -4.0f);  /* sub-block 7: q 0, sc 30, m 16 */
    for (int s = 0; s < 8; s++)
        for (int l = 0; l < 32; l++) {
            const int q = s % 2 == 0 ? l % 16 : 15 - l % 16;
            const float want = 0.5f * (float)(ksc[s] * q) - 0.25f * (float)kmn[s];
            CHECK_MSG(y[32 * s + l] == want, "sub-block %d value %d: %g != %g", s, l, (double)y[32 * s + l],
                      (double)want);
        }
    /* negative super-block scales are taken as they are */
    b.d = h(-1.0f);
    b.dmin = h(-2.0f);
    sov_dequantize_row(SOV_TYPE_Q4_K, &b, y, 256);
    CHECK(y[0] == 4.0f && y[4 * 32 + 7] == -339.0f); /* -1*1*0 + 2*2; -49*7 + 2*2 */
}

static void q5_K_fifth_bits_pair_per_group(void) {
    block_q5_K b = {.d = h(1.0f), .dmin = h(1.0f)};
    /* every sub-block scale 1, min 0: low bits 1 in bytes 0-3, nibble 1 in bytes 8-11 */
    const uint8_t ones[12] = {1, 1, 1, 1, 0, 0, 0, 0, 0x01, 0x01, 0x01, 0x01};
    memcpy(b.scales, ones, 12);
    memset(b.qs, 0, sizeof b.qs);
    memset(b.qh, 0, sizeof b.qh);
    /* value l of sub-block s takes bit s of qh[l] */
    b.qh[3] = (uint8_t)(1u << 0 | 1u << 5);  /* sub-block 0 value 3, sub-block 5 value 3 */
    b.qh[31] = (uint8_t)(1u << 7 | 1u << 3); /* sub-blocks 7 and 3, value 31 */
    b.qh[5] = (uint8_t)(1u << 2);            /* sub-block 2 value 5 */
    b.qs[32 * 2 + 3] = 0x70;                /* group 2: sub-block 5 value 3 high nibble 7 */
    b.qs[32 * 3 + 31] = 0x0F;               /* group 3: sub-block 6 value 31 low nibble 15 */
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q5_K, &b, y, 256);
    CHECK(y[3] == 16.0f);
    CHECK(y[5 * 32 + 3] == 23.0f);
    CHECK(y[7 * 32 + 31] == 16.0f);
    CHECK(y[3 * 32 + 31] == 16.0f && y[2 * 32 + 5] == 16.0f);
    CHECK(y[6 * 32 + 31] == 15.0f); /* its fifth bit (bit 6 of qh[31]) is clear */
    CHECK(y[4] == 0.0f && y[32 + 3] == 0.0f && y[4 * 32 + 3] == 0.0f);
    /* with the hand-packed scales and mins of the q4_K test: 2 sc q - m */
    memcpy(b.scales, kscales, 12);
    b.d = h(2.0f);
    sov_dequantize_row(SOV_TYPE_Q5_K, &b, y, 256);
    CHECK(y[3] == 2.0f * 1 * 16 - 2);          /* sub-block 0 */
    CHECK(y[5 * 32 + 3] == 2.0f * 3 * 23 - 63); /* sub-block 5 */
    CHECK(y[7 * 32 + 31] == 2.0f * 30 * 16 - 16);
    CHECK(y[6 * 32 + 31] == 2.0f * 44 * 15 - 5);
}

static void q6_K_quarters_and_signed_scales(void) {
    block_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = h(0.5f);
    for (int j = 0; j < 16; j++) b.scales[j] = (int8_t)(j % 2 ? -(j + 1) : (j + 1));
    b.scales[15] = -128;
    /* half 0: ql[l] low nibble = value l, ql[l] high = value l+64, ql[l+32] low = value
     * l+32, ql[l+32] high = value l+96; qh[l] bits 0-1,2-3,4-5,6-7 the top two bits of
     * values l, l+32, l+64, l+96; value v uses scale v / 16 */
    b.ql[0] = 0x21;       /* value 0: 1, value 64: 2 */
    b.ql[32] = 0x43;      /* value 32: 3, value 96: 4 */
    b.qh[0] = 0xE4;       /* bits: value 0 0b00, value 32 0b01, value 64 0b10, value 96 0b11 */
    b.ql[20] = 0x09;      /* value 20 (sub-block 1): 9 ... */
    b.qh[20] = 0x02;      /* ... + 0b10 << 4 = 41 */
    b.ql[64 + 17] = 0x0F; /* half 1, value 128 + 17: low 15 */
    b.qh[32 + 17] = 0x03; /* its top bits 0b11: 63 */
    b.ql[64 + 63] = 0xA0; /* half 1, value 128 + 96 + 31 = 255: high nibble of ql[64 + 32 + 31] = 10 */
    b.qh[32 + 31] = 0x40; /* bits 6-7 of qh[32 + 31] = 0b01: 10 | 16 = 26 */
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q6_K, &b, y, 256);
    CHECK(y[0] == (0.5f * 1.0f) * (float)(1 - 32));         /* sub-block 0, scale 1 */
    CHECK(y[20] == (0.5f * -2.0f) * (float)(41 - 32));      /* sub-block 1, scale -2 */
    CHECK(y[32] == (0.5f * 3.0f) * (float)((3 | 16) - 32)); /* sub-block 2, scale 3 */
    CHECK(y[64] == (0.5f * 5.0f) * (float)((2 | 32) - 32)); /* sub-block 4, scale 5 */
    CHECK(y[96] == (0.5f * 7.0f) * (float)((4 | 48) - 32)); /* sub-block 6, scale 7 */
    CHECK(y[128 + 17] == (0.5f * -10.0f) * (float)(63 - 32)); /* sub-block 9, scale -10 */
    CHECK(y[255] == (0.5f * -128.0f) * (float)(26 - 32));     /* sub-block 15, scale -128: 384 */
    CHECK(y[255] == 384.0f);
    CHECK(y[1] == -16.0f && y[254] == 2048.0f); /* level 0: -32 */
    /* a negative super-block scale */
    b.d = h(-0.25f);
    sov_dequantize_row(SOV_TYPE_Q6_K, &b, y, 256);
    CHECK(y[0] == 7.75f && y[255] == -192.0f);
}

static void subnormal_and_infinite_scales(void) {
    block_q8_0 b = {.d = 0x0001}; /* 2^-24 */
    for (int j = 0; j < 32; j++) b.qs[j] = 100;
    b.qs[1] = 0;
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q8_0, &b, y, 32);
    CHECK(y[0] == 100.0f * 0x1p-24f);
    b.d = 0x8200; /* -2^-15, a negative subnormal */
    sov_dequantize_row(SOV_TYPE_Q8_0, &b, y, 32);
    CHECK(y[0] == -100.0f * 0x1p-15f);
    b.d = 0x7c00; /* +inf: inf times a level, and inf times level 0 is NaN (IEEE) */
    sov_dequantize_row(SOV_TYPE_Q8_0, &b, y, 32);
    CHECK(isinf(y[0]) && y[0] > 0 && isnan(y[1]));
    /* a k-quant with a subnormal dmin: the min term is exact */
    block_q4_K k = {.d = h(1.0f), .dmin = 0x0003}; /* 3 x 2^-24 */
    memcpy(k.scales, kscales, 12);
    memset(k.qs, 0, sizeof k.qs);
    float yk[256];
    sov_dequantize_row(SOV_TYPE_Q4_K, &k, yk, 256);
    CHECK(yk[32] == -3.0f * 63 * 0x1p-24f && yk[0] == -3.0f * 2 * 0x1p-24f);
}

static void activation_formats_are_level_times_scale(void) {
    block_q8a a = {.d = 0.375f, .s = 0.0f};
    for (int j = 0; j < 32; j++) a.qs[j] = (int8_t)(j - 16);
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q8A, &a, y, 32);
    CHECK(y[0] == -6.0f && y[16] == 0.0f && y[31] == 5.625f);
    static block_q8k k;
    k.d = -2.0f;
    for (int j = 0; j < 256; j++) k.qs[j] = (int8_t)(j % 2 ? 127 : -128);
    sov_dequantize_row(SOV_TYPE_Q8K, &k, y, 256);
    CHECK(y[0] == 256.0f && y[255] == -254.0f);
}

int main(void) {
    RUN(f16_and_bf16_convert_exactly);
    RUN(q4_0_low_nibbles_first_minus_8);
    RUN(q4_1_adds_the_min);
    RUN(q5_0_fifth_bit_j_for_value_j);
    RUN(q5_1_fifth_bit_and_min);
    RUN(q8_0_signed_bytes);
    RUN(k_scales_unpack_from_hand_packed_bytes);
    RUN(q4_K_sub_blocks_of_32);
    RUN(q5_K_fifth_bits_pair_per_group);
    RUN(q6_K_quarters_and_signed_scales);
    RUN(subnormal_and_infinite_scales);
    RUN(activation_formats_are_level_times_scale);
    TEST_EXIT();
}
