/* digest.c - the model file's SHA-256 on a helper thread (see digest.h).
 *
 * The thread feeds the mapping to OpenSSL's SHA-256 (SHA-NI where the CPU has it) in
 * chunks and publishes how far it got after each one; the loader blocks on a condition
 * variable until the range it needs is behind the hasher. */
#include "model/digest.h"

#include <openssl/evp.h>
#include <stdio.h>

#include "core/status.h"

/* Large enough that the lock and wake-up per chunk cost nothing next to hashing it, small
 * enough that the loader never waits long for the range it needs. */
enum { DIGEST_CHUNK = 4 << 20 };

static void publish(model_digest *d, size_t done, bool failed) {
    pthread_mutex_lock(&d->mu);
    d->done = done;
    d->failed = failed;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void *hash_thread(void *arg) {
    model_digest *d = arg;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    size_t at = 0;
    while (ok && at < d->size) {
        const size_t n = d->size - at < DIGEST_CHUNK ? d->size - at : DIGEST_CHUNK;
        ok = EVP_DigestUpdate(ctx, d->base + at, n);
        at += n;
        if (ok && at < d->size) publish(d, at, false);
    }
    unsigned int len = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, d->md, &len) && len == sizeof d->md;
    EVP_MD_CTX_free(ctx);
    /* the loader may go on once everything is hashed; a failure releases it too */
    publish(d, d->size, !ok);
    return NULL;
}

sov_status digest_start(model_digest *d, const uint8_t *base, size_t size) {
    *d = (model_digest){.base = base, .size = size};
    if (pthread_mutex_init(&d->mu, NULL) != 0) return sov_fail(SOV_ERR_NOMEM, "model: cannot create a mutex");
    if (pthread_cond_init(&d->cv, NULL) != 0) {
        pthread_mutex_destroy(&d->mu);
        return sov_fail(SOV_ERR_NOMEM, "model: cannot create a condition variable");
    }
    if (pthread_create(&d->thread, NULL, hash_thread, d) != 0) {
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
        return sov_fail(SOV_ERR_NOMEM, "model: cannot start the thread that hashes the file");
    }
    d->started = true;
    return SOV_OK;
}

size_t digest_wait(model_digest *d, size_t upto) {
    if (!d->started) return upto;
    if (upto > d->size) upto = d->size;
    pthread_mutex_lock(&d->mu);
    while (d->done < upto && !d->failed)
        pthread_cond_wait(&d->cv, &d->mu);
    const size_t done = d->done;
    pthread_mutex_unlock(&d->mu);
    return done;
}

size_t digest_progress(model_digest *d) {
    if (!d->started) return 0;
    pthread_mutex_lock(&d->mu);
    const size_t done = d->done;
    pthread_mutex_unlock(&d->mu);
    return done;
}

sov_status digest_finish(model_digest *d, char hex[65]) {
    hex[0] = '\0';
    if (!d->started) return sov_fail(SOV_ERR_ARG, "model: the file's hash was never started");
    pthread_join(d->thread, NULL);
    d->started = false;
    const bool failed = d->failed;
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    if (failed) return sov_fail(SOV_ERR_NOMEM, "model: cannot compute the file's SHA-256 (OpenSSL failed)");
    for (size_t i = 0; i < sizeof d->md; i++)
        snprintf(hex + 2 * i, 3, "%02x", d->md[i]);
    return SOV_OK;
}
