/* kv.c - block pool and block tables of the paged KV cache (see kv.h).
 *
 * Hygiene: a block holds one request's keys and values (derived from its prompt), so a
 * block is zeroed when its last reference goes, before it can be handed to anyone else;
 * a copy on write copies only the positions the new owner shares. Every free block is
 * therefore all zeros (the pool starts as fresh anonymous memory). The pool is also kept
 * out of core dumps (MADV_DONTDUMP). Zeroing costs a memset of the block's share of each
 * layer and head per release, outside the forward pass (docs/SANDBOX.md has the figures). */
#include "kv/kv.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/status.h"
#include "core/util.h"
#include "sandbox/sandbox.h"

/* An anonymous mapping for a pool: pages are committed on first write, so an unused pool
 * costs address space, not memory. It starts on a 2 MiB boundary and asks for transparent
 * huge pages: a decode step at depth streams each layer's and head's region of the pool
 * (kv.h), and with 4 KiB pages every 4 KiB of it took a TLB miss (a nested page walk
 * under a hypervisor): TinyLlama-shaped Q4_0 at depth 16,384, t=2, on a Xeon decoded 19.3
 * tokens/s on 4 KiB pages, 20.7 on huge pages. Each region then commits in 2 MiB steps
 * instead of 4 KiB ones (where the kernel grants huge pages; else it is as before), so the
 * first sequence commits up to 2 MiB per layer, head and keys/values, never more than the
 * pool. Trimmed to exactly the pages of bytes, so munmap(p, bytes) releases it all.
 * MAP_FAILED on failure. */
static void *pool_map(size_t bytes) {
    const size_t huge = (size_t)2 << 20, page = 4096;
    const size_t len = (bytes + page - 1) & ~(page - 1);
    if (len < huge || len > SIZE_MAX - huge)
        return mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    uint8_t *raw =
        mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return MAP_FAILED;
    uint8_t *base = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    if (base > raw) munmap(raw, (size_t)(base - raw));
    const size_t tail = (size_t)(raw + len + huge - (base + len));
    if (tail) munmap(base + len, tail);
    madvise(base, len, MADV_HUGEPAGE);
    return base;
}

int32_t kv_group(int32_t head_dim) {
    if (head_dim >= 32) return head_dim % 32 == 0 ? 32 : 0;
    return head_dim >= 2 && 32 % head_dim == 0 ? head_dim : 0;
}

size_t kv_row_bytes(sov_kv_type type, int32_t head_dim) {
    const int32_t g = kv_group(head_dim);
    switch (type) {
    case SOV_KV_DEFAULT: return 0;
    case SOV_KV_F16: return (size_t)head_dim * 2;
    case SOV_KV_F32: return (size_t)head_dim * 4;
    case SOV_KV_Q8_0: return g ? (size_t)(head_dim / g) * (2 + (size_t)g) : 0;
    case SOV_KV_Q4_0: return g ? (size_t)(head_dim / g) * (2 + (size_t)g / 2) : 0;
    }
    return 0;
}

static const char *const type_names[] = {"default", "f16", "f32", "q8_0", "q4_0"};

const char *kv_type_name(sov_kv_type type) {
    return (unsigned)type < SOV_ARRAY_LEN(type_names) ? type_names[type] : "?";
}

bool kv_type_parse(const char *name, sov_kv_type *type) {
    for (size_t i = SOV_KV_F16; i < SOV_ARRAY_LEN(type_names); i++)
        if (strcmp(name, type_names[i]) == 0) {
            *type = (sov_kv_type)i;
            return true;
        }
    return false;
}

size_t kv_block_bytes(int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t block_size, sov_kv_type k_type,
                      sov_kv_type v_type) {
    const size_t kr = kv_row_bytes(k_type, head_dim), vr = kv_row_bytes(v_type, head_dim);
    if (!kr || !vr) return 0;
    return (size_t)n_layer * (size_t)n_head_kv * (size_t)block_size * (kr + vr);
}

sov_status kv_init(sov_kv *kv, int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t block_size,
                   int32_t n_blocks, sov_kv_type type) {
    return kv_init_types(kv, n_layer, n_head_kv, head_dim, block_size, n_blocks, type, type);
}

sov_status kv_init_types(sov_kv *kv, int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t block_size,
                         int32_t n_blocks, sov_kv_type k_type, sov_kv_type v_type) {
    memset(kv, 0, sizeof *kv);
    if (n_blocks < 1 || block_size < 1)
        return sov_fail(SOV_ERR_ARG, "kv cache: %d blocks of %d positions is too small", n_blocks, block_size);
    kv->k_row = kv_row_bytes(k_type, head_dim);
    kv->v_row = kv_row_bytes(v_type, head_dim);
    if (!kv->k_row || !kv->v_row)
        return sov_fail(SOV_ERR_ARG, "kv cache: a head size of %d cannot be stored as %s (quantized types need a "
                        "multiple of 32 or a divisor of 32)", head_dim, kv_type_name(kv->k_row ? v_type : k_type));
    kv->n_layer = n_layer;
    kv->n_head_kv = n_head_kv;
    kv->head_dim = head_dim;
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    kv->type = k_type;
    kv->v_type = v_type;
    kv->group = kv_group(head_dim);
    kv->k_transposed = k_type == SOV_KV_F16 || k_type == SOV_KV_F32;
    kv->head_bytes = (size_t)block_size * kv->k_row;
    kv->v_head_bytes = (size_t)block_size * kv->v_row;
    kv->block_bytes = (size_t)n_layer * (size_t)n_head_kv * kv->head_bytes;
    kv->v_block_bytes = (size_t)n_layer * (size_t)n_head_kv * kv->v_head_bytes;
    if (!sov_mul_size(kv->block_bytes, (size_t)n_blocks, &kv->map_bytes) ||
        !sov_mul_size(kv->v_block_bytes, (size_t)n_blocks, &kv->v_map_bytes))
        return sov_fail(SOV_ERR_ARG, "kv cache: size overflows");
    kv->k = pool_map(kv->map_bytes);
    kv->v = pool_map(kv->v_map_bytes);
    kv->ref = calloc((size_t)n_blocks, sizeof *kv->ref);
    kv->free_stack = malloc((size_t)n_blocks * sizeof *kv->free_stack);
    if (kv->k == MAP_FAILED || kv->v == MAP_FAILED || !kv->ref || !kv->free_stack) {
        if (kv->k == MAP_FAILED) kv->k = NULL;
        if (kv->v == MAP_FAILED) kv->v = NULL;
        const size_t want = kv->map_bytes + kv->v_map_bytes;
        kv_destroy(kv);
        return sov_fail(SOV_ERR_NOMEM, "kv cache: cannot reserve %zu bytes", want);
    }
    sandbox_dontdump(kv->k, kv->map_bytes);
    sandbox_dontdump(kv->v, kv->v_map_bytes);
    /* block 0 on top of the stack: low addresses are used first */
    for (int32_t i = 0; i < n_blocks; i++) kv->free_stack[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    return SOV_OK;
}

void kv_destroy(sov_kv *kv) {
    if (kv->k) munmap(kv->k, kv->map_bytes);
    if (kv->v) munmap(kv->v, kv->v_map_bytes);
    free(kv->ref);
    free(kv->free_stack);
    memset(kv, 0, sizeof *kv);
}

int32_t kv_alloc(sov_kv *kv) {
    if (kv->n_free == 0) return -1;
    int32_t b = kv->free_stack[--kv->n_free];
    kv->ref[b] = 1;
    return b;
}

void kv_retain(sov_kv *kv, int32_t block) { kv->ref[block]++; }

void kv_release(sov_kv *kv, int32_t block) {
    if (--kv->ref[block] > 0) return;
    /* no later owner may read this request's keys and values */
    for (int32_t l = 0; l < kv->n_layer; l++)
        for (int32_t h = 0; h < kv->n_head_kv; h++) {
            memset(kv_k(kv, l, block, h), 0, kv->head_bytes);
            memset(kv_v(kv, l, block, h), 0, kv->v_head_bytes);
        }
    kv->free_stack[kv->n_free++] = block;
}

/* Copies the first n slots of every head of block src into the (zero) block dst: what a
 * sequence shares of a block, not the positions after it that belong to another request. */
static void copy_slots(sov_kv *kv, int32_t dst, int32_t src, int32_t n) {
    const size_t elt = kv->k_row / (size_t)kv->head_dim; /* float keys: bytes per element */
    for (int32_t l = 0; l < kv->n_layer; l++) {
        for (int32_t h = 0; h < kv->n_head_kv; h++) {
            memcpy(kv_v(kv, l, dst, h), kv_v(kv, l, src, h), (size_t)n * kv->v_row);
            uint8_t *kd = kv_k(kv, l, dst, h);
            const uint8_t *ks = kv_k(kv, l, src, h);
            if (!kv->k_transposed) { /* quantized keys: by position, like the values */
                memcpy(kd, ks, (size_t)n * kv->k_row);
                continue;
            }
            const size_t stride = (size_t)kv->block_size * elt; /* keys: dimension -> slot */
            for (int32_t d = 0; d < kv->head_dim; d++)
                memcpy(kd + (size_t)d * stride, ks + (size_t)d * stride, (size_t)n * elt);
        }
    }
}

/* Whether appending at position seq->n_pos writes into an existing, shared block. */
static bool tail_is_shared(const sov_kv *kv, const kv_seq *seq) {
    if (seq->n_pos % kv->block_size == 0 || seq->n_pos == 0) return false;
    const int32_t b = seq->blocks[seq->n_pos / kv->block_size];
    return kv->ref[b] > 1;
}

int32_t kv_seq_blocks_needed(const sov_kv *kv, const kv_seq *seq, int32_t new_len) {
    const int32_t want = (new_len + kv->block_size - 1) / kv->block_size;
    int32_t n = want > seq->n_blocks ? want - seq->n_blocks : 0;
    if (new_len > seq->n_pos && tail_is_shared(kv, seq)) n++;
    return n;
}

sov_status kv_seq_reserve(sov_kv *kv, kv_seq *seq, int32_t new_len) {
    const int32_t want = (new_len + kv->block_size - 1) / kv->block_size;
    if (want > seq->cap) {
        int32_t cap = seq->cap ? seq->cap : 16;
        while (cap < want) cap *= 2;
        int32_t *p = realloc(seq->blocks, (size_t)cap * sizeof *p);
        if (!p) return sov_fail(SOV_ERR_NOMEM, "kv cache: out of memory for a block table");
        seq->blocks = p;
        seq->cap = cap;
    }
    if (new_len > seq->n_pos && tail_is_shared(kv, seq)) {
        const int32_t i = seq->n_pos / kv->block_size, old = seq->blocks[i];
        const int32_t fresh = kv_alloc(kv);
        if (fresh < 0) return sov_fail(SOV_ERR_KV_FULL, "kv cache: no free block");
        copy_slots(kv, fresh, old, seq->n_pos % kv->block_size);
        kv_release(kv, old);
        seq->blocks[i] = fresh;
    }
    while (seq->n_blocks < want) {
        const int32_t b = kv_alloc(kv);
        if (b < 0) return sov_fail(SOV_ERR_KV_FULL, "kv cache: no free block");
        seq->blocks[seq->n_blocks++] = b;
    }
    return SOV_OK;
}

void kv_seq_truncate(sov_kv *kv, kv_seq *seq, int32_t n_keep) {
    if (n_keep < 0) n_keep = 0;
    if (n_keep > seq->n_pos) n_keep = seq->n_pos;
    const int32_t keep_blocks = (n_keep + kv->block_size - 1) / kv->block_size;
    while (seq->n_blocks > keep_blocks) kv_release(kv, seq->blocks[--seq->n_blocks]);
    seq->n_pos = n_keep;
}

void kv_seq_clear(sov_kv *kv, kv_seq *seq) {
    kv_seq_truncate(kv, seq, 0);
}
