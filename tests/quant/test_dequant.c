/* The block formats, pinned by hand: blocks built byte by byte with values worked out on
 * paper from each format's definition, and the dequantized floats they must give
 * (nibble order, fifth bits, the 12 packed 6-bit k-quant scales and mins decoded from
 * literal bytes incl. sub-blocks 4..7, q6_K's ql/qh/scales, negative, subnormal and
 * infinite half scales). Then every value of blocks of random bytes against the layout
 * written out value by value, rows of several blocks, Q8A/Q8K, and the planar layouts
 * against the file rows they come from. Any change to nibble order, fifth/sixth-bit
 * placement, scale packing or block stepping fails here. (The order of q6_K's
 * (d * scale) * q cannot change a value: both partial products are exact in float.) */
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


/* The 12 packed scale bytes of a k-quant block, decoded by hand (not by a packer):
 *   j < 4:  scale = q[j] & 63,  min = q[j+4] & 63
 *   j >= 4: scale = (q[j+4] & 0xF) | (q[j-4] >> 6) << 4,  min = (q[j+4] >> 4) | (q[j] >> 6) << 4 */
static const uint8_t kscales[12] = {0xC1, 0x7F, 0x85, 0x00, 0x4A, 0xBF, 0x3C, 0xC0, 0x21, 0xF0, 0x0F, 0x9A};
static const int ksc[8] = {1, 63, 5, 0, 49, 16, 47, 10}; /* e.g. j=4: 0x21 & 0xF = 1, 0xC1 >> 6 = 3: 1 | 48 */
static const int kmn[8] = {10, 63, 60, 0, 18, 47, 0, 57}; /* e.g. j=7: 0x9A >> 4 = 9, 0xC0 >> 6 = 3: 9 | 48 */

static void k_scales_decode_as_worked_by_hand(void) {
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        sov_k_scale_min(j, kscales, &s, &m);
        CHECK_MSG(s == ksc[j] && m == kmn[j], "sub-block %d: scale %d min %d, want %d %d", j, s, m, ksc[j], kmn[j]);
    }
}

static void q4_K_high_sub_blocks_and_mins(void) {
    block_q4_K b = {.d = h(0.5f), .dmin = h(-0.25f)}; /* a negative dmin adds the min */
    memcpy(b.scales, kscales, 12);
    for (int i = 0; i < 128; i++) b.qs[i] = (uint8_t)(3 | (12 << 4)); /* low 3, high 12 */
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q4_K, &b, y, 256);
    /* sub-block 4 (values 128..159, low nibbles of bytes 64..95): 0.5*49*3 + 0.25*18 */
    CHECK(y[128] == 0.5f * 49.0f * 3.0f + 0.25f * 18.0f && y[159] == y[128]);
    /* sub-block 5 (values 160..191, high nibbles): 0.5*16*12 + 0.25*47 */
    CHECK(y[160] == 0.5f * 16.0f * 12.0f + 0.25f * 47.0f);
    CHECK(y[192] == 0.5f * 47.0f * 3.0f);                     /* sub-block 6: min 0 */
    CHECK(y[255] == 0.5f * 10.0f * 12.0f + 0.25f * 57.0f);    /* sub-block 7 */
    CHECK(y[96] == 0.0f);                                     /* sub-block 3: scale 0, min 0 */
    CHECK(y[32] == 0.5f * 63.0f * 12.0f + 0.25f * 63.0f);     /* sub-block 1 */
}

static void q5_K_scales_mins_and_fifth_bits(void) {
    block_q5_K b = {.d = h(0.25f), .dmin = h(1.0f)};
    memcpy(b.scales, kscales, 12);
    memset(b.qs, 0x5A, sizeof b.qs); /* low nibble 10, high 5 */
    memset(b.qh, 0, sizeof b.qh);
    b.qh[7] = 0xFF;                  /* value 7 of every sub-block gets +16 */
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q5_K, &b, y, 256);
    CHECK(y[4 * 32 + 7] == 0.25f * 49.0f * 26.0f - 18.0f); /* sub-block 4: low nibble 10 + 16 */
    CHECK(y[4 * 32 + 6] == 0.25f * 49.0f * 10.0f - 18.0f);
    CHECK(y[7 * 32 + 7] == 0.25f * 10.0f * 21.0f - 57.0f); /* sub-block 7: high nibble 5 + 16 */
    CHECK(y[1 * 32 + 0] == 0.25f * 63.0f * 5.0f - 63.0f);
}

static void negative_scales_flip_the_values(void) {
    block_q4_0 a = {.d = h(-0.5f)};
    memset(a.qs, 0x0F, 16); /* low 15, high 0 */
    float y[32];
    sov_dequantize_row(SOV_TYPE_Q4_0, &a, y, 32);
    CHECK(y[0] == -3.5f && y[16] == 4.0f);
    block_q8_0 c = {.d = h(-2.0f)};
    for (int j = 0; j < 32; j++) c.qs[j] = (int8_t)(j == 0 ? -128 : j == 1 ? 127 : 0);
    sov_dequantize_row(SOV_TYPE_Q8_0, &c, y, 32);
    CHECK(y[0] == 256.0f && y[1] == -254.0f && y[2] == 0.0f);
    block_q5_1 d = {.d = h(-1.0f), .m = h(-3.0f)};
    memset(d.qs, 0x21, 16);
    memset(d.qh, 0xFF, 4);
    sov_dequantize_row(SOV_TYPE_Q5_1, &d, y, 32);
    CHECK(y[0] == -17.0f - 3.0f && y[16] == -18.0f - 3.0f);
    block_q6_K e;
    memset(&e, 0, sizeof e);
    e.d = h(-1.0f);
    e.scales[0] = -128;
    float y6[256];
    sov_dequantize_row(SOV_TYPE_Q6_K, &e, y6, 256);
    CHECK(y6[0] == (-1.0f * -128.0f) * -32.0f && y6[15] == y6[0]); /* level 0 is -32 */
    CHECK(y6[16] == 0.0f * -32.0f);                                 /* sub-block 1: scale 0 */
}

/* Every value of a block of random bytes against the layout written out per value (an
 * independent derivation of the index arithmetic), for the formats with split bits. */
static uint8_t nib(const uint8_t *q, int byte, int high) { return high ? q[byte] >> 4 : q[byte] & 0xF; }

static void random_blocks_match_the_layout_value_by_value(void) {
    test_rng r = {2024};
    uint8_t raw[3 * 210];
    float y[3 * 256];
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < sizeof raw; i++) raw[i] = (uint8_t)test_rng_next(&r);
        /* q5_0, 3 blocks: value j < 16 is the low nibble of qs[j], j >= 16 the high nibble of
         * qs[j-16]; its fifth bit is bit j of qh */
        block_q5_0 *q5 = (block_q5_0 *)raw;
        for (int i = 0; i < 3; i++) q5[i].d = h(0.125f * (float)(i + 1) * (round % 2 ? -1.0f : 1.0f));
        sov_dequantize_row(SOV_TYPE_Q5_0, q5, y, 96);
        int bad = 0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 32; j++) {
                const uint32_t qh = (uint32_t)q5[i].qh[0] | (uint32_t)q5[i].qh[1] << 8 | (uint32_t)q5[i].qh[2] << 16 |
                                    (uint32_t)q5[i].qh[3] << 24;
                const int q = nib(q5[i].qs, j % 16, j >= 16) + 16 * (int)((qh >> j) & 1);
                bad += y[32 * i + j] != (float)(q - 16) * sov_half_to_f32(q5[i].d);
            }
        /* q4_K, 2 blocks: value v = 64g + 32h + l is nibble h of qs[32g + l], sub-block 2g + h */
        block_q4_K *k4 = (block_q4_K *)raw;
        for (int i = 0; i < 2; i++) k4[i].d = h(0.01f * (float)(i + 1)), k4[i].dmin = h(-0.02f);
        sov_dequantize_row(SOV_TYPE_Q4_K, k4, y, 512);
        for (int i = 0; i < 2; i++)
            for (int v = 0; v < 256; v++) {
                const int g = v / 64, hh = (v / 32) % 2, l = v % 32;
                uint8_t sc, m;
                sov_k_scale_min(2 * g + hh, k4[i].scales, &sc, &m);
                const float want = sov_half_to_f32(k4[i].d) * (float)sc * (float)nib(k4[i].qs, 32 * g + l, hh) -
                                   sov_half_to_f32(k4[i].dmin) * (float)m;
                bad += y[256 * i + v] != want;
            }
        /* q5_K, 2 blocks: as q4_K plus bit (2g + h) of qh[l] */
        block_q5_K *k5 = (block_q5_K *)raw;
        for (int i = 0; i < 2; i++) k5[i].d = h(0.03f), k5[i].dmin = h(0.5f * (float)i);
        sov_dequantize_row(SOV_TYPE_Q5_K, k5, y, 512);
        for (int i = 0; i < 2; i++)
            for (int v = 0; v < 256; v++) {
                const int g = v / 64, hh = (v / 32) % 2, l = v % 32;
                uint8_t sc, m;
                sov_k_scale_min(2 * g + hh, k5[i].scales, &sc, &m);
                const int q = nib(k5[i].qs, 32 * g + l, hh) + 16 * ((k5[i].qh[l] >> (2 * g + hh)) & 1);
                bad += y[256 * i + v] != sov_half_to_f32(k5[i].d) * (float)sc * (float)q -
                                             sov_half_to_f32(k5[i].dmin) * (float)m;
            }
        /* q6_K, 3 blocks: value v = 128c + 32g + l; low 4 bits: nibble (g >= 2) of
         * ql[64c + 32(g % 2) + l]; high 2 bits: bits 2g..2g+1 of qh[32c + l]; scale
         * scales[8c + 2g + l / 16]; value (d * scale) * (q - 32) */
        block_q6_K *k6 = (block_q6_K *)raw;
        for (int i = 0; i < 3; i++) k6[i].d = h(i == 1 ? -0.004f : 0.002f);
        sov_dequantize_row(SOV_TYPE_Q6_K, k6, y, 768);
        for (int i = 0; i < 3; i++)
            for (int v = 0; v < 256; v++) {
                const int c = v / 128, g = (v % 128) / 32, l = v % 32;
                const int q = nib(k6[i].ql, 64 * c + 32 * (g % 2) + l, g >= 2) |
                              ((k6[i].qh[32 * c + l] >> (2 * g)) & 3) << 4;
                const float want = sov_half_to_f32(k6[i].d) * (float)k6[i].scales[8 * c + 2 * g + l / 16] * (float)(q - 32);
                bad += y[256 * i + v] != want;
            }
        CHECK_MSG(bad == 0, "round %d: %d values differ from the layout", round, bad);
    }
}

static void rows_of_several_blocks_step_block_by_block(void) {
    static const sov_type types[] = {SOV_TYPE_Q4_0, SOV_TYPE_Q4_1, SOV_TYPE_Q5_0, SOV_TYPE_Q5_1, SOV_TYPE_Q8_0,
                                     SOV_TYPE_Q4_K, SOV_TYPE_Q5_K, SOV_TYPE_Q6_K};
    test_rng r = {7};
    uint8_t raw[4 * 210];
    float all[4 * 256], one[256];
    for (size_t t = 0; t < SOV_ARRAY_LEN_T(types); t++) {
        const sov_type_traits *tr = sov_type_info(types[t]);
        for (size_t i = 0; i < sizeof raw; i++) raw[i] = (uint8_t)test_rng_next(&r);
        for (int b = 0; b < 4; b++) { /* finite scales: the halves at offset 0 and 2 (q6_K: 208) */
            uint8_t *blk = raw + b * tr->type_size;
            const sov_half d = h(0.01f * (float)(b + 1));
            memcpy(blk + (types[t] == SOV_TYPE_Q6_K ? 208 : 0), &d, 2);
            if (types[t] != SOV_TYPE_Q6_K) memcpy(blk + 2, &d, 2);
        }
        sov_dequantize_row(types[t], raw, all, 4 * tr->block_size);
        for (int b = 0; b < 4; b++) {
            sov_dequantize_row(types[t], raw + b * tr->type_size, one, tr->block_size);
            CHECK_MSG(memcmp(one, all + b * tr->block_size, (size_t)tr->block_size * sizeof(float)) == 0,
                      "%s block %d of a row", tr->name, b);
        }
    }
}

static void activation_formats_are_q_times_d(void) {
    block_q8a a = {.d = 0.5f, .s = 0.0f};
    for (int j = 0; j < 32; j++) a.qs[j] = (int8_t)(j - 16);
    float y[256];
    sov_dequantize_row(SOV_TYPE_Q8A, &a, y, 32);
    CHECK(y[0] == -8.0f && y[31] == 7.5f);
    static block_q8k k;
    k.d = -0.25f;
    for (int j = 0; j < 256; j++) k.qs[j] = (int8_t)(j % 255 - 127);
    sov_dequantize_row(SOV_TYPE_Q8K, &k, y, 256);
    CHECK(y[0] == 31.75f && y[254] == -31.75f && y[255] == 31.75f);
}

/* Planar rows hold the same values as the file rows they were repacked from, for whole
 * pairs of blocks and a trailing odd block */
static void planar_rows_dequantize_like_their_file_rows(void) {
    test_rng r = {99};
    for (int nb = 1; nb <= 11; nb += 2) {
        for (int pass = 0; pass < 2; pass++) {
            const int n = 32 * (nb + pass); /* odd and even block counts */
            const sov_type ft = pass ? SOV_TYPE_Q8_0 : SOV_TYPE_Q4_0, pt = pass ? SOV_TYPE_Q8_0P : SOV_TYPE_Q4_0P;
            float x[32 * 12], y1[32 * 12], y2[32 * 12];
            uint8_t file[34 * 12], planar[34 * 12];
            for (int i = 0; i < n; i++) x[i] = test_rng_float(&r);
            CHECK(sov_quantize_row(ft, x, file, n));
            sov_repack_row_planar_to(ft, file, planar, n);
            sov_dequantize_row(ft, file, y1, n);
            sov_dequantize_row(pt, planar, y2, n);
            CHECK_MSG(memcmp(y1, y2, (size_t)n * sizeof(float)) == 0, "%s, %d blocks", sov_type_name(pt), n / 32);
            CHECK(sov_repack_row_planar(ft, file, n)); /* in place gives the same bytes */
            CHECK(memcmp(file, planar, sov_row_size(ft, n)) == 0);
        }
    }
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
    RUN(k_scales_decode_as_worked_by_hand);
    RUN(q4_K_high_sub_blocks_and_mins);
    RUN(q5_K_scales_mins_and_fifth_bits);
    RUN(negative_scales_flip_the_values);
    RUN(random_blocks_match_the_layout_value_by_value);
    RUN(rows_of_several_blocks_step_block_by_block);
    RUN(activation_formats_are_q_times_d);
    RUN(planar_rows_dequantize_like_their_file_rows);
    TEST_EXIT();
}
