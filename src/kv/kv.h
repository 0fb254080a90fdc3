/* kv.h - the paged KV cache: a pool of fixed-size blocks and per-sequence block tables.
 *
 * The cache holds, for every layer, the keys and values of cached positions. Storage is
 * a pool of n_blocks blocks; a block holds block_size consecutive positions of one
 * sequence for all layers and KV heads. Each (layer, KV head) has its own region of the
 * pool, in which its share of every block follows the previous block's:
 *     values: layer -> kv head -> block -> slot (position within the block) -> head_dim
 *     keys:   layer -> kv head -> block -> head_dim -> slot   (float keys, transposed:
 *             dimension i of slot j at i * block_size + j)
 *             layer -> kv head -> block -> slot -> head_dim   (quantized keys)
 * A decode step reads, per layer and KV head, that head's share of each of the sequence's
 * blocks in order; a sequence's blocks mostly come from the pool in increasing order, so
 * those reads are one long ascending stream that the CPU's prefetchers follow, where with
 * blocks outermost each share (2 KB) lay a whole block (all layers) from the next. One
 * head's keys and values for a block are contiguous, float keys hold one dimension of
 * consecutive positions per vector (the attention kernels need no horizontal sums, see
 * kernels.h). Nothing outside the store (ops.c) and the attention kernels depends on the
 * order within a head's slots: blocks are copied and zeroed head by head (kv_k, kv_v).
 *
 * Keys and values each have their own element type (sov_kv_type): F16, F32, or one of
 * the quantized rows Q8_0 / Q4_0 (kv_quant.h), where one position's head_dim values are
 * groups of kv->group values (32, or head_dim when that is smaller), each an f16 scale
 * and the group's int8 (Q8_0) or 4-bit (Q4_0) values, as in GGUF's block_q8_0 /
 * block_q4_0 when the group is 32.
 *
 * A sequence owns a block table: blocks[i] holds its positions [i*bs, (i+1)*bs).
 * Blocks are reference counted so that sequences can share a common prefix (the server's
 * prefix cache hands full blocks from one sequence to another); a shared block is never
 * written: appending into a shared partial block copies it first (copy on write), only
 * the positions the appending sequence shares. A block is zeroed when its last reference
 * goes, so a block handed out never holds another request's keys or values. */
#ifndef SOV_KV_H
#define SOV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

typedef struct sov_kv {
    int32_t n_layer, n_head_kv, head_dim;
    int32_t block_size;   /* positions per block */
    int32_t n_blocks;
    sov_kv_type type;     /* keys' element type */
    sov_kv_type v_type;   /* values' element type */
    int32_t group;        /* values per quantization group along head_dim (quantized types) */
    bool k_transposed;    /* keys stored dimension-major (float keys) */
    size_t k_row, v_row;  /* bytes of one position's head_dim keys / values */
    size_t head_bytes;    /* bytes of one head's keys in a block: block_size * k_row */
    size_t block_bytes;   /* bytes of one block's keys, all layers (in n_layer * n_head_kv pieces) */
    size_t map_bytes;     /* bytes mapped for k */
    size_t v_head_bytes, v_block_bytes, v_map_bytes; /* the same for the values */
    uint8_t *k, *v;       /* [n_layer][n_head_kv][n_blocks][block_size][head_dim] */
    int32_t *ref;         /* [n_blocks] reference counts (0 = free) */
    int32_t *free_stack;  /* [n_blocks] free block ids; the top is reused first */
    int32_t n_free;
} sov_kv;

typedef struct kv_seq {
    bool live;
    int32_t n_pos;        /* positions cached */
    int32_t *blocks;      /* block table */
    int32_t n_blocks;     /* entries used in blocks */
    int32_t cap;
} kv_seq;

/* Values per quantization group for head_dim (32, or head_dim when smaller and dividing
 * 32); 0 when head_dim cannot be quantized in groups (not a multiple of 32 nor a divisor). */
int32_t kv_group(int32_t head_dim);
/* Bytes of one position's head_dim values of this type (group as kv_group), 0 when the
 * type cannot hold head_dim. */
size_t kv_row_bytes(sov_kv_type type, int32_t head_dim);
/* The name of a type ("f16", "f32", "q8_0", "q4_0"), and back (false when unknown). */
const char *kv_type_name(sov_kv_type type);
bool kv_type_parse(const char *name, sov_kv_type *type);

/* Bytes one block takes (keys and values) for these dimensions, 0 when head_dim cannot
 * be stored in one of the types. */
size_t kv_block_bytes(int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t block_size, sov_kv_type k_type,
                      sov_kv_type v_type);

/* A pool of n_blocks blocks with keys of k_type and values of v_type. */
sov_status kv_init_types(sov_kv *kv, int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t block_size,
                         int32_t n_blocks, sov_kv_type k_type, sov_kv_type v_type);
/* The same with one type for keys and values. */
sov_status kv_init(sov_kv *kv, int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t block_size,
                   int32_t n_blocks, sov_kv_type type);
void kv_destroy(sov_kv *kv);

/* A free block with reference count 1, or -1 when none is free. */
int32_t kv_alloc(sov_kv *kv);
void kv_retain(sov_kv *kv, int32_t block);
/* Drops a reference; at zero the block is zeroed and returns to the pool. */
void kv_release(sov_kv *kv, int32_t block);

/* Keys / values of one head of one layer in a block: block_size positions (layout above;
 * n_blocks must be set, as kv_init does). */
static inline void *kv_k(const sov_kv *kv, int32_t layer, int32_t block, int32_t head) {
    return kv->k + (((size_t)layer * (size_t)kv->n_head_kv + (size_t)head) * (size_t)kv->n_blocks + (size_t)block) *
                       kv->head_bytes;
}
static inline void *kv_v(const sov_kv *kv, int32_t layer, int32_t block, int32_t head) {
    return kv->v + (((size_t)layer * (size_t)kv->n_head_kv + (size_t)head) * (size_t)kv->n_blocks + (size_t)block) *
                       kv->v_head_bytes;
}

/* Blocks that growing seq to new_len positions would take from the pool (new blocks,
 * plus a copy of a shared partial last block). */
int32_t kv_seq_blocks_needed(const sov_kv *kv, const kv_seq *seq, int32_t new_len);
/* Makes seq's block table cover new_len positions with blocks it may write. The caller
 * has checked kv_seq_blocks_needed() <= n_free. Errors: SOV_ERR_NOMEM (table growth),
 * SOV_ERR_KV_FULL. */
sov_status kv_seq_reserve(sov_kv *kv, kv_seq *seq, int32_t new_len);
/* Drops positions >= n_keep, releasing blocks no longer needed. */
void kv_seq_truncate(sov_kv *kv, kv_seq *seq, int32_t n_keep);
/* Releases every block and clears the sequence (keeps the table's memory). */
void kv_seq_clear(sov_kv *kv, kv_seq *seq);

#endif
