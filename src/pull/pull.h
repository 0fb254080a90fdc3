/* pull.h - fetching a GGUF model from a Hugging Face-compatible hub (`sov pull`).
 *
 * A source names a repository and, optionally, a file in it or a quantisation tag:
 *
 *   hf://ORG/REPO/PATH/FILE.gguf   that file
 *   hf://ORG/REPO, ORG/REPO        the repository's Q4_K_M model, else Q8_0, else its first
 *   ORG/REPO:QUANT                 the model file whose name carries -QUANT. or .QUANT.
 *                                  (case-insensitive), as llama.cpp's -hf picks it
 *
 * The hub's layout (what the public hub and its mirrors serve):
 *
 *   GET {endpoint}/api/models/ORG/REPO/tree/main?recursive=true
 *       a JSON array of {"type": "file", "path", "size", "oid", "lfs": {"oid": SHA256,
 *       "size"}}: the LFS oid of a file is the SHA-256 of its contents
 *   GET {endpoint}/ORG/REPO/resolve/main/PATH
 *       the file (often through a redirect); an LFS file's response carries
 *       X-Linked-Etag: "SHA256" (and, direct, ETag), which is used when the tree has none
 *
 * Downloading writes DIR/.partial/FILE (with FILE.sha256 beside it naming the contents it
 * is a prefix of), resumes an interrupted transfer with a Range request, checks the
 * SHA-256 of the whole file against the hub's, and only then renames it to DIR/FILE: the
 * models folder never holds a half-written or unverified model. A mismatch deletes the
 * partial file.
 *
 * Everything the hub sends is outside input: the tree's JSON and the headers are parsed
 * strictly (pull_tree_parse, pull_etag_sha256; fuzz/fuzz_pull.c), a path with "..", a
 * leading '/', a backslash or a control character is refused, never followed. */
#ifndef SOV_PULL_PULL_H
#define SOV_PULL_PULL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

#define PULL_DEFAULT_ENDPOINT "https://huggingface.co"
#define PULL_PARTIAL_DIR ".partial"

enum {
    PULL_REPO_MAX = 200,          /* bytes of ORG/REPO */
    PULL_PATH_MAX = 1024,         /* bytes of a file's path in the repository */
    PULL_QUANT_MAX = 32,          /* bytes of a quantisation tag */
    PULL_TREE_MAX = 16 << 20,     /* bytes of a tree listing */
    PULL_TREE_FILES_MAX = 100000, /* entries of a tree listing */
};

/* ---- sources and the hub's metadata (hub.c: no network) ---- */

typedef struct pull_source {
    char repo[PULL_REPO_MAX + 1];   /* "ORG/REPO" */
    char path[PULL_PATH_MAX + 1];   /* the file in the repository, "" to pick by quant */
    char quant[PULL_QUANT_MAX + 1]; /* the tag to pick by, "" for the default order */
} pull_source;

/* Parses a source (the forms above). Errors: SOV_ERR_ARG with the reason in sov_last_error(). */
sov_status pull_source_parse(const char *text, pull_source *out);

/* True when path is a safe relative path in a repository: 1..PULL_PATH_MAX bytes of
 * [A-Za-z0-9._+@=-] and '/', no empty, "." or ".." segment, no leading '/'. */
bool pull_path_ok(const char *path);

typedef struct pull_file {
    char *path;    /* in the repository (malloc'd) */
    uint64_t size; /* bytes, from lfs.size or size; 0 when unknown */
    bool has_size;
    char sha256[65]; /* lowercase hex from lfs.oid, "" when the tree has none */
} pull_file;

typedef struct pull_tree {
    pull_file *files;
    size_t n;
} pull_tree;

/* Parses a tree listing (len bytes of JSON). Entries that are not files, or whose path
 * pull_path_ok refuses, are skipped; a malformed listing (not an array, a file with a
 * non-string path, an lfs.oid that is not 64 hex digits, a negative size) is
 * SOV_ERR_FORMAT. The caller frees with pull_tree_free. */
sov_status pull_tree_parse(const char *json, size_t len, pull_tree *out);
void pull_tree_free(pull_tree *t);

/* The entry with exactly this path, or NULL. */
const pull_file *pull_tree_find(const pull_tree *t, const char *path);

/* The model file a quant tag picks (llama.cpp's rule): among *.gguf files that are not
 * projectors, imatrix or draft files and not the 2nd+ part of a split, the first whose path
 * contains TAG followed by '.' or '-' (case-insensitive); with no tag, Q4_K_M, then Q8_0,
 * then the first model file. NULL when none. */
const pull_file *pull_tree_pick(const pull_tree *t, const char *quant);

/* True when a header value (ETag or X-Linked-Etag: optional W/, optional quotes) is a
 * SHA-256: 64 hex digits, written lowercase to hex. A git blob id (40 digits) is not. */
bool pull_etag_sha256(const char *value, size_t len, char hex[65]);

/* The URL of a path on the hub: endpoint (its trailing '/' dropped) + "/" + rest, where
 * rest's characters outside [A-Za-z0-9._~/?=&-] are percent-encoded (rest is built from
 * checked parts; '?', '=' and '&' pass for the query). Returns a malloc'd
 * string or NULL (out of memory). */
char *pull_url(const char *endpoint, const char *rest);

/* ---- downloading (fetch.c: libcurl) ---- */

/* Progress of a transfer: bytes of the file present (resumed + received), its total (0 when
 * unknown), and the bytes received by this run over elapsed seconds (the rate). */
typedef void (*pull_progress_fn)(void *user, uint64_t have, uint64_t total, uint64_t got_now, double seconds);

typedef struct pull_opts {
    const char *endpoint; /* the hub, PULL_DEFAULT_ENDPOINT when NULL */
    const char *token;    /* a bearer token (HF_TOKEN) or NULL */
    const char *sha256;   /* the expected SHA-256 when the caller knows it, else NULL */
    int retries;          /* resumed attempts after a dropped connection */
    long timeout_s;       /* abort a transfer stalled this long (0: 60) */
    pull_progress_fn progress;
    void *progress_user;
} pull_opts;

/* What a pull did. */
typedef struct pull_result {
    char path[4096]; /* the model's final path */
    char sha256[65]; /* its verified SHA-256 */
    uint64_t size;
    uint64_t resumed_from; /* bytes already present when the last attempt started */
    int attempts;          /* HTTP transfers of the file */
    bool already;          /* DIR/FILE was there with the hub's contents: nothing done */
} pull_result;

/* Resolves src on the hub and downloads the file into dir (created when missing) as
 * described above. Errors (sov_last_error() says which, one line): SOV_ERR_NOT_FOUND (no
 * such repository or file: HTTP 404, or no file matches the tag), SOV_ERR_FORMAT (the
 * hub's metadata is malformed, or the checksum does not match: the partial file is
 * deleted), SOV_ERR_ARG (the hub gives no SHA-256 and opts has none; the target exists
 * with other contents), SOV_ERR_IO (network or disk: a partial file is kept for the next
 * run to resume). */
sov_status pull_model(const pull_source *src, const char *dir, const pull_opts *opts, pull_result *out);

#endif
