/* prefix.c - the automatic prefix cache (see prefix.h): a chained hash table of full KV
 * blocks with an LRU list, exact on lookup (parent hash and tokens are compared). */
#include "sched/prefix.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/status.h"

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A per-process secret keys the roots, so nobody outside can aim for collisions (which
 * would only cost a miss anyway: lookups compare tokens). */
static uint64_t secret(void) {
    static uint64_t s;
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        uint64_t v = 0;
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = (uint64_t)(uintptr_t)&v ^ 0x5bd1e995u;
        __atomic_store_n(&s, v | 1, __ATOMIC_RELAXED);
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&s, __ATOMIC_RELAXED);
}

uint64_t pc_root(const char *tenant) {
    uint64_t h = mix64(secret() ^ 0x7e4a11c3d2b5f908ull);
    for (const unsigned char *p = (const unsigned char *)tenant; *p; p++) h = mix64(h ^ *p) + 0x9e3779b97f4a7c15ull;
    return mix64(h ^ strlen(tenant));
}

uint64_t pc_chain(uint64_t parent, const sov_token *toks, int32_t n) {
    uint64_t h = parent ^ 0x2545f4914f6cdd1dull;
    for (int32_t i = 0; i < n; i++) h = mix64(h ^ (uint32_t)toks[i]) + 0x9e3779b97f4a7c15ull;
    return mix64(h ^ (uint64_t)n);
}

sov_status pc_init(prefix_cache *pc, sov_context *ctx) {
    memset(pc, 0, sizeof *pc);
    pc->ctx = ctx;
    pc->block_size = sov_kv_block_size(ctx);
    pc->cap = sov_kv_blocks_total(ctx);
    pc->n_bucket = 16;
    while (pc->n_bucket < 2u * (uint32_t)pc->cap) pc->n_bucket *= 2;
    pc->e = calloc((size_t)pc->cap, sizeof *pc->e);
    pc->toks = malloc((size_t)pc->cap * (size_t)pc->block_size * sizeof *pc->toks);
    pc->bucket = malloc(pc->n_bucket * sizeof *pc->bucket);
    pc->free_ids = malloc((size_t)pc->cap * sizeof *pc->free_ids);
    if (!pc->e || !pc->toks || !pc->bucket || !pc->free_ids) {
        pc_destroy(pc);
        return sov_fail(SOV_ERR_NOMEM, "prefix cache: out of memory for %d entries", pc->cap);
    }
    for (uint32_t i = 0; i < pc->n_bucket; i++) pc->bucket[i] = -1;
    for (int32_t i = 0; i < pc->cap; i++) pc->free_ids[i] = pc->cap - 1 - i;
    pc->n_free = pc->cap;
    pc->head = pc->tail = -1;
    return SOV_OK;
}

void pc_destroy(prefix_cache *pc) {
    if (pc->e && pc->ctx)
        for (int32_t i = pc->head; i >= 0; i = pc->e[i].next) sov_kv_block_release(pc->ctx, pc->e[i].block);
    free(pc->e);
    free(pc->toks);
    free(pc->bucket);
    free(pc->free_ids);
    memset(pc, 0, sizeof *pc);
}

/* ---- LRU list ---- */

static void lru_unlink(prefix_cache *pc, int32_t i) {
    pc_entry *e = &pc->e[i];
    if (e->prev >= 0) pc->e[e->prev].next = e->next;
    else pc->head = e->next;
    if (e->next >= 0) pc->e[e->next].prev = e->prev;
    else pc->tail = e->prev;
    e->prev = e->next = -1;
}

static void lru_push_front(prefix_cache *pc, int32_t i) {
    pc_entry *e = &pc->e[i];
    e->prev = -1;
    e->next = pc->head;
    if (pc->head >= 0) pc->e[pc->head].prev = i;
    pc->head = i;
    if (pc->tail < 0) pc->tail = i;
}

static void touch(prefix_cache *pc, int32_t i) {
    if (pc->head == i) return;
    lru_unlink(pc, i);
    lru_push_front(pc, i);
}

/* ---- table ---- */

static int32_t find(const prefix_cache *pc, uint64_t hash) {
    for (int32_t i = pc->bucket[hash & (pc->n_bucket - 1)]; i >= 0; i = pc->e[i].hnext)
        if (pc->e[i].hash == hash) return i;
    return -1;
}

static void remove_entry(prefix_cache *pc, int32_t i) {
    int32_t *link = &pc->bucket[pc->e[i].hash & (pc->n_bucket - 1)];
    while (*link != i) link = &pc->e[*link].hnext;
    *link = pc->e[i].hnext;
    lru_unlink(pc, i);
    sov_kv_block_release(pc->ctx, pc->e[i].block);
    pc->free_ids[pc->n_free++] = i;
    pc->n_used--;
}

int32_t pc_match(prefix_cache *pc, uint64_t root, const sov_token *toks, const uint64_t *hashes, int32_t n_blocks,
                 int32_t *blocks_out) {
    const int32_t bs = pc->block_size;
    int32_t n = 0;
    uint64_t parent = root;
    for (; n < n_blocks; n++) {
        const int32_t i = find(pc, hashes[n]);
        if (i < 0 || pc->e[i].parent != parent ||
            memcmp(pc->toks + (size_t)i * (size_t)bs, toks + (size_t)n * (size_t)bs, (size_t)bs * sizeof *toks) != 0)
            break;
        blocks_out[n] = pc->e[i].block;
        parent = hashes[n];
    }
    pc->lookups_blocks += (uint64_t)n_blocks;
    pc->hits_blocks += (uint64_t)n;
    /* most recent: the head of the chain, so touch from the tail back */
    for (int32_t k = n - 1; k >= 0; k--) touch(pc, find(pc, hashes[k]));
    return n;
}

int32_t pc_match_partial(prefix_cache *pc, uint64_t parent, const sov_token *toks, int32_t n, int32_t *block_out) {
    const int32_t bs = pc->block_size;
    if (n > bs) n = bs;
    int32_t best = 0, best_i = -1;
    for (int32_t i = pc->head; i >= 0 && best < n; i = pc->e[i].next) {
        if (pc->e[i].parent != parent) continue;
        const sov_token *t = pc->toks + (size_t)i * (size_t)bs;
        int32_t k = 0;
        while (k < n && t[k] == toks[k]) k++;
        if (k > best) {
            best = k;
            best_i = i;
        }
    }
    if (best_i < 0) return 0;
    *block_out = pc->e[best_i].block;
    touch(pc, best_i);
    pc->hits_partial_tokens += (uint64_t)best;
    return best;
}

bool pc_insert(prefix_cache *pc, uint64_t parent, uint64_t hash, const sov_token *toks, int32_t block) {
    if (find(pc, hash) >= 0 || pc->n_free == 0) return false;
    const int32_t i = pc->free_ids[--pc->n_free];
    pc_entry *e = &pc->e[i];
    e->hash = hash;
    e->parent = parent;
    e->block = block;
    memcpy(pc->toks + (size_t)i * (size_t)pc->block_size, toks, (size_t)pc->block_size * sizeof *toks);
    const uint32_t b = (uint32_t)(hash & (pc->n_bucket - 1));
    e->hnext = pc->bucket[b];
    pc->bucket[b] = i;
    lru_push_front(pc, i);
    sov_kv_block_retain(pc->ctx, block);
    pc->n_used++;
    return true;
}

void pc_touch_chain(prefix_cache *pc, const uint64_t *hashes, int32_t n) {
    for (int32_t k = n - 1; k >= 0; k--) {
        const int32_t i = find(pc, hashes[k]);
        if (i >= 0) touch(pc, i);
    }
}

int32_t pc_evict(prefix_cache *pc, int32_t want) {
    int32_t freed = 0;
    for (int32_t i = pc->tail; i >= 0 && sov_kv_blocks_free(pc->ctx) < want;) {
        const int32_t prev = pc->e[i].prev;
        if (sov_kv_block_refs(pc->ctx, pc->e[i].block) == 1) {
            remove_entry(pc, i);
            pc->evictions++;
            freed++;
        }
        i = prev;
    }
    return freed;
}

int32_t pc_evictable(const prefix_cache *pc) {
    int32_t n = 0;
    for (int32_t i = pc->head; i >= 0; i = pc->e[i].next) n += sov_kv_block_refs(pc->ctx, pc->e[i].block) == 1;
    return n;
}
