/* digest.h - the SHA-256 of a mapped model file, computed on a helper thread while the
 * loader prefaults and repacks the weights.
 *
 * Hashing is one sequential pass (SHA-256 cannot be split across cores), so it runs on a
 * thread of its own from the first byte to the last while the loader's work goes on
 * beside it: the loader touches every page ahead of the hash (the first touch of a page
 * is what costs: the fault, the read from disk, in a virtual machine the nested page
 * walk), repacks, and releases a range of file pages only once the hash has passed it,
 * so no page is read from storage twice. Start-up then costs about max(hash, load)
 * instead of hash + load, and the hash runs at SHA-256's own speed. */
#ifndef SOV_MODEL_DIGEST_H
#define SOV_MODEL_DIGEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

typedef struct model_digest {
    const uint8_t *base; /* the mapped file */
    size_t size;
    pthread_t thread;
    bool started; /* the thread runs (else digest_wait returns at once) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done; /* bytes hashed so far (mu) */
    bool failed; /* the hash could not be computed (mu) */
    unsigned char md[32];
} model_digest;

/* Starts hashing [base, base + size) on a new thread. Errors: SOV_ERR_NOMEM. */
sov_status digest_start(model_digest *d, const uint8_t *base, size_t size);

/* Waits until the first `upto` bytes are hashed (or hashing failed). Returns the bytes
 * hashed so far. */
size_t digest_wait(model_digest *d, size_t upto);

/* Bytes hashed so far, without waiting. */
size_t digest_progress(model_digest *d);

/* Joins the thread and writes the SHA-256 as 64 lowercase hex digits and a NUL to hex.
 * Safe to call once after digest_start, whatever happened in between. Errors:
 * SOV_ERR_NOMEM (OpenSSL could not hash). */
sov_status digest_finish(model_digest *d, char hex[65]);

#endif
