/* prefix.h - the automatic prefix cache: full KV blocks of token prefixes, found again by
 * hashing, shared between sequences by reference count.
 *
 * A block of block_size tokens at block index i of a sequence is named by a chained hash
 *     h_0 = root (the tenant's key, hashed with a per-process secret)
 *     h_i+1 = H(h_i, tokens of block i)
 * so a hash stands for the tenant and every token from the start of the sequence to the
 * end of the block. The cache maps h -> block id and holds one reference to the block
 * (sov_kv_block_retain); a sequence that starts with the same tokens attaches the blocks
 * (sov_seq_attach_blocks) instead of computing them. Entries also keep their parent hash
 * and their tokens, and a lookup checks both, so a hash collision can never hand out the
 * wrong block: a hit is exact. Different tenants start from different roots and never
 * share an entry.
 *
 * Eviction is least-recently-used among blocks only the cache holds (reference count 1):
 * a block some sequence still uses frees nothing when dropped. When a sequence ends the
 * scheduler touches its chain from the last block to the first, so a chain's tail is
 * evicted before its head and a lookup (which walks from the head) finds what remains.
 *
 * Not thread safe: the engine thread owns it. */
#ifndef SOV_SCHED_PREFIX_H
#define SOV_SCHED_PREFIX_H

#include <stdbool.h>
#include <stdint.h>

#include "sov.h"

typedef struct pc_entry {
    uint64_t hash;          /* chained hash through this block */
    uint64_t parent;        /* chained hash of the block before (the root for block 0) */
    int32_t block;          /* KV block id; the cache holds one reference */
    int32_t hnext;          /* next entry in the same hash bucket, -1 at the end */
    int32_t prev, next;     /* LRU list: prev is more recent; -1 at the ends */
} pc_entry;

typedef struct prefix_cache {
    sov_context *ctx;
    int32_t block_size;
    int32_t cap;            /* entries = KV blocks in the pool (a block is cached at most once) */
    pc_entry *e;            /* [cap] */
    sov_token *toks;        /* [cap][block_size] tokens of each entry */
    int32_t *bucket;        /* [n_bucket] first entry of each bucket, -1 when empty */
    uint32_t n_bucket;      /* power of two >= 2 * cap */
    int32_t *free_ids;      /* [cap] unused entry slots */
    int32_t n_free;
    int32_t head, tail;     /* LRU list: head most recent, tail evicted first */
    int32_t n_used;
    /* counters for /metrics */
    uint64_t hits_blocks, lookups_blocks, evictions, hits_partial_tokens;
} prefix_cache;

/* The root hash of a tenant's chains. */
uint64_t pc_root(const char *tenant);
/* The chained hash of a block of n tokens after parent. */
uint64_t pc_chain(uint64_t parent, const sov_token *toks, int32_t n);

sov_status pc_init(prefix_cache *pc, sov_context *ctx);
/* Releases every cached block and frees the tables. */
void pc_destroy(prefix_cache *pc);

/* The longest run of cached blocks at the start of toks (n_blocks full blocks whose chain
 * hashes are hashes[0..n_blocks), hashes[i] being the hash through block i). Writes their
 * ids to blocks_out and returns how many; marks them recently used. */
int32_t pc_match(prefix_cache *pc, uint64_t root, const sov_token *toks, const uint64_t *hashes,
                 int32_t n_blocks, int32_t *blocks_out);

/* After a run of matched full blocks ending in chain hash `parent`: the cached block that
 * continues the chain and shares the longest run of leading tokens with toks[0..n)
 * (n < block_size: the part of the prompt that is not a full block, or a full block
 * that differs somewhere). Returns that run's length (0: none) and the block in
 * *block_out, marked recently used. The caller attaches the block and truncates the
 * sequence to the matched length; its first write into the block copies it. O(entries). */
int32_t pc_match_partial(prefix_cache *pc, uint64_t parent, const sov_token *toks, int32_t n, int32_t *block_out);

/* Adds block (holding toks[0..block_size)) under hash, retaining it. Does nothing and
 * returns false when the hash is already cached (another sequence computed the same
 * prefix: keep the first). */
bool pc_insert(prefix_cache *pc, uint64_t parent, uint64_t hash, const sov_token *toks, int32_t block);

/* Marks the entries of these blocks recently used, the last block first, so that the
 * first is the most recent (blocks the cache does not hold are skipped). */
void pc_touch_chain(prefix_cache *pc, const uint64_t *hashes, int32_t n);

/* Drops least-recently-used entries whose block only the cache holds until `want` blocks
 * are free in the pool or nothing more can be evicted. Returns the blocks freed. */
int32_t pc_evict(prefix_cache *pc, int32_t want);

/* Blocks that eviction could free now (entries whose block only the cache holds). */
int32_t pc_evictable(const prefix_cache *pc);

#endif
