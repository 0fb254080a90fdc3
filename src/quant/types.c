/* types.c - the table of every ggml tensor type: name, block size, bytes per block,
 * whether sov computes with it, and which activation format its dot product takes.
 *
 * Sizes of types sov cannot compute with are here too, so a file holding them still
 * parses (and `sov inspect` shows it) and the error names the type. */
#include "quant/quant.h"

#include <stdio.h>
#include <strings.h>

#define T(id, nm, bs, ts, sup, act) [id] = {nm, bs, ts, sup, act}

static const sov_type_traits traits[SOV_TYPE_COUNT] = {
    T(SOV_TYPE_F32, "F32", 1, 4, true, SOV_TYPE_F32),
    T(SOV_TYPE_F16, "F16", 1, 2, true, SOV_TYPE_F32),
    T(SOV_TYPE_Q4_0, "Q4_0", 32, 18, true, SOV_TYPE_Q8A),
    T(SOV_TYPE_Q4_1, "Q4_1", 32, 20, true, SOV_TYPE_Q8A),
    T(SOV_TYPE_Q5_0, "Q5_0", 32, 22, true, SOV_TYPE_Q8A),
    T(SOV_TYPE_Q5_1, "Q5_1", 32, 24, true, SOV_TYPE_Q8A),
    T(SOV_TYPE_Q8_0, "Q8_0", 32, 34, true, SOV_TYPE_Q8A),
    T(SOV_TYPE_Q8_1, "Q8_1", 32, 36, false, SOV_TYPE_Q8A),
    T(SOV_TYPE_Q2_K, "Q2_K", 256, 84, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_Q3_K, "Q3_K", 256, 110, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_Q4_K, "Q4_K", 256, 144, true, SOV_TYPE_Q8K),
    T(SOV_TYPE_Q5_K, "Q5_K", 256, 176, true, SOV_TYPE_Q8K),
    T(SOV_TYPE_Q6_K, "Q6_K", 256, 210, true, SOV_TYPE_Q8K),
    T(SOV_TYPE_Q8_K, "Q8_K", 256, 292, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_IQ2_XS, "IQ2_XS", 256, 74, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_IQ1_S, "IQ1_S", 256, 50, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_IQ4_NL, "IQ4_NL", 32, 18, false, SOV_TYPE_Q8A),
    T(SOV_TYPE_IQ3_S, "IQ3_S", 256, 110, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_IQ2_S, "IQ2_S", 256, 82, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_IQ4_XS, "IQ4_XS", 256, 136, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_I8, "I8", 1, 1, false, SOV_TYPE_F32),
    T(SOV_TYPE_I16, "I16", 1, 2, false, SOV_TYPE_F32),
    T(SOV_TYPE_I32, "I32", 1, 4, false, SOV_TYPE_F32),
    T(SOV_TYPE_I64, "I64", 1, 8, false, SOV_TYPE_F32),
    T(SOV_TYPE_F64, "F64", 1, 8, false, SOV_TYPE_F32),
    T(SOV_TYPE_IQ1_M, "IQ1_M", 256, 56, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_BF16, "BF16", 1, 2, true, SOV_TYPE_F32),
    T(SOV_TYPE_TQ1_0, "TQ1_0", 256, 54, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_TQ2_0, "TQ2_0", 256, 66, false, SOV_TYPE_Q8K),
    T(SOV_TYPE_MXFP4, "MXFP4", 32, 17, false, SOV_TYPE_Q8A),
    T(SOV_TYPE_NVFP4, "NVFP4", 64, 36, false, SOV_TYPE_Q8A),
    T(SOV_TYPE_Q1_0, "Q1_0", 128, 18, false, SOV_TYPE_Q8A),
    T(SOV_TYPE_Q2_0, "Q2_0", 64, 18, false, SOV_TYPE_Q8A),
};

static const sov_type_traits own_traits[] = {
    [SOV_TYPE_Q8A - SOV_TYPE_Q8A] = {"Q8A", 32, 40, true, SOV_TYPE_Q8A},
    [SOV_TYPE_Q8K - SOV_TYPE_Q8A] = {"Q8K", 256, 292, true, SOV_TYPE_Q8K},
    [SOV_TYPE_Q4_0P - SOV_TYPE_Q8A] = {"Q4_0P", 32, 18, true, SOV_TYPE_Q8P},
    [SOV_TYPE_Q8_0P - SOV_TYPE_Q8A] = {"Q8_0P", 32, 34, true, SOV_TYPE_Q8P},
    [SOV_TYPE_Q8P - SOV_TYPE_Q8A] = {"Q8P", 32, 40, true, SOV_TYPE_Q8P},
};

const sov_type_traits *sov_type_info(uint32_t type) {
    if (type >= SOV_TYPE_Q8A && type < SOV_TYPE_MAX) return &own_traits[type - SOV_TYPE_Q8A];
    if (type >= SOV_TYPE_COUNT || !traits[type].name) return NULL;
    return &traits[type];
}

const char *sov_type_name(uint32_t type) {
    static _Thread_local char buf[32];
    const sov_type_traits *t = sov_type_info(type);
    if (t) return t->name;
    snprintf(buf, sizeof buf, "unknown(%u)", type);
    return buf;
}

int sov_type_from_name(const char *name) {
    for (uint32_t i = 0; i < SOV_TYPE_COUNT; i++)
        if (traits[i].name && strcasecmp(traits[i].name, name) == 0) return (int)i;
    return -1;
}

size_t sov_row_size(sov_type type, int64_t n) {
    const sov_type_traits *t = sov_type_info(type);
    return t ? (size_t)(n / t->block_size) * (size_t)t->type_size : 0;
}
