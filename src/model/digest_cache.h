/* digest_cache.h - remembering a model file's SHA-256 between starts.
 *
 * Hashing is the one part of loading that cannot be split across cores (~1.7 GB/s on one
 * core with SHA-NI), so a server that restarts hashes the same unchanged file every time.
 * The cache keeps, in a small text file in sov's state folder, the SHA-256 of each model
 * file it hashed, under the file's identity and change stamps:
 *
 *     device, inode, size, modification time, status-change time (both in nanoseconds)
 *
 * Any write to the file's contents changes its mtime and its ctime, and nothing an
 * unprivileged user can do sets the ctime back (utimensat() sets ctime to now; replacing
 * the file changes the inode), so an unchanged key means unchanged contents unless someone
 * with root or raw access to the block device edited the file — who could as well edit the
 * sov binary. An entry is written only when the file's ctime was at least
 * DIGEST_CACHE_SETTLE_NS old when hashing began and its stamps were the same when hashing
 * ended, so a write racing with the hash (in the same clock tick as the stamp) cannot leave
 * a stale entry ("racy git"). The file trusts the state folder: whoever can write there
 * could also replace the audit signing key.
 *
 * Format (one entry per line, newest last, at most DIGEST_CACHE_MAX entries):
 *     sov-digest-cache 1
 *     <dev> <ino> <size> <mtime_ns> <ctime_ns> <sha256 hex>
 * A line that does not parse is ignored (a miss), never an error. */
#ifndef SOV_MODEL_DIGEST_CACHE_H
#define SOV_MODEL_DIGEST_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

enum { DIGEST_CACHE_MAX = 64 };
#define DIGEST_CACHE_SETTLE_NS (2 * 1000000000LL)

typedef struct digest_key {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
} digest_key;

struct stat;
/* The key of a file from its status (as fstat() gave it). */
digest_key digest_key_of_stat(const struct stat *st);
/* The key of a path (following links, as open() does). Errors: SOV_ERR_IO. */
sov_status digest_key_of_path(const char *path, digest_key *out);
bool digest_key_equal(const digest_key *a, const digest_key *b);
/* Whether an entry may be written for a file whose key was taken at now_ns (realtime). */
bool digest_key_settled(const digest_key *k, int64_t now_ns);

/* Looks the key up in the cache text (the whole file's contents, len bytes): true and the
 * hex digest (64 digits and a NUL) when an entry matches exactly. */
bool digest_cache_find(const char *text, size_t len, const digest_key *k, char hex[65]);

/* The same on the cache file at path; a missing or unreadable file is a miss. */
bool digest_cache_lookup(const char *path, const digest_key *k, char hex[65]);

/* Records hex for k in the cache file at path: the entries of other files are kept (the
 * newest DIGEST_CACHE_MAX - 1), any entry for the same device and inode replaced, and the
 * file replaced atomically (written beside it, fsync, rename). Errors: SOV_ERR_IO. */
sov_status digest_cache_store(const char *path, const digest_key *k, const char hex[65]);

#endif
