/* hub.c - what `sov pull` parses: the source on its command line, the hub's tree listing
 * (JSON) and its checksum headers, and the URLs it builds. No network here (fetch.c). */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/status.h"
#include "pull/pull.h"

static bool name_char(char c) { return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-'; }

/* One ORG or REPO name, as the hub allows them: 1..96 of [A-Za-z0-9._-], starting and
 * ending with a letter or digit, without ".." or "--". */
static bool repo_part_ok(const char *s, size_t n) {
    if (n == 0 || n > 96 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1])) return false;
    for (size_t i = 0; i < n; i++) {
        if (!name_char(s[i])) return false;
        if (i && (s[i] == '.' || s[i] == '-') && s[i - 1] == s[i]) return false;
    }
    return true;
}

bool pull_path_ok(const char *path) {
    const size_t n = strlen(path);
    if (n == 0 || n > PULL_PATH_MAX || path[0] == '/') return false;
    size_t seg = 0;
    for (size_t i = 0; i <= n; i++) {
        const char c = path[i];
        if (c == '/' || c == '\0') {
            const char *s = path + i - seg;
            if (seg == 0 || (seg == 1 && s[0] == '.') || (seg == 2 && s[0] == '.' && s[1] == '.'))
                return false;
            seg = 0;
            continue;
        }
        if (!(name_char(c) || c == '+' || c == '@' || c == '=')) return false;
        seg++;
    }
    return true;
}

static bool ends_with_ci(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

sov_status pull_source_parse(const char *text, pull_source *out) {
    memset(out, 0, sizeof *out);
    const char *s = text;
    const bool hf = strncmp(s, "hf://", 5) == 0;
    if (hf)
        s += 5;
    else if (strstr(s, "://"))
        return sov_fail(SOV_ERR_ARG,
                        "source '%s': only hf://ORG/REPO[/FILE.gguf] and ORG/REPO[:QUANT] are known", text);
    const char *slash = strchr(s, '/');
    if (!slash) return sov_fail(SOV_ERR_ARG, "source '%s' names no repository: expected ORG/REPO", text);
    const char *org = s;
    const size_t org_n = (size_t)(slash - s);
    const char *repo = slash + 1;
    size_t repo_n = strcspn(repo, "/:");
    if (!repo_part_ok(org, org_n) || !repo_part_ok(repo, repo_n))
        return sov_fail(SOV_ERR_ARG,
                        "source '%s': ORG and REPO are 1-96 of letters, digits, '.', '_', '-', starting and "
                        "ending with a letter or digit",
                        text);
    memcpy(out->repo, org, org_n + 1 + repo_n);
    out->repo[org_n + 1 + repo_n] = '\0';
    const char *rest = repo + repo_n;
    if (*rest == ':') {
        const char *q = rest + 1;
        const size_t qn = strlen(q);
        if (qn == 0 || qn > PULL_QUANT_MAX)
            return sov_fail(SOV_ERR_ARG, "source '%s': an empty or long QUANT tag", text);
        for (size_t i = 0; i < qn; i++)
            if (!isalnum((unsigned char)q[i]) && q[i] != '_')
                return sov_fail(SOV_ERR_ARG,
                                "source '%s': a QUANT tag is letters, digits and '_' (e.g. Q4_K_M)", text);
        memcpy(out->quant, q, qn + 1);
    } else if (*rest == '/') {
        const char *p = rest + 1;
        if (!*p) return SOV_OK; /* hf://ORG/REPO/ */
        if (!pull_path_ok(p))
            return sov_fail(SOV_ERR_ARG,
                            "source '%s': the file path has characters or segments ('..') not allowed", text);
        if (!ends_with_ci(p, ".gguf"))
            return sov_fail(SOV_ERR_ARG, "source '%s': sov pulls GGUF files (*.gguf)", text);
        snprintf(out->path, sizeof out->path, "%s", p);
    } else if (*rest) {
        return sov_fail(SOV_ERR_ARG, "source '%s' is not ORG/REPO[:QUANT] or hf://ORG/REPO/FILE.gguf", text);
    }
    return SOV_OK;
}

/* ---- the tree listing ---- */

static bool hex64(const char *s, size_t n, char hex[65]) {
    if (n != 64) return false;
    for (size_t i = 0; i < 64; i++) {
        if (!isxdigit((unsigned char)s[i])) return false;
        hex[i] = (char)tolower((unsigned char)s[i]);
    }
    hex[64] = '\0';
    return true;
}

static sov_status size_of(json_t *v, uint64_t *out, bool *has, size_t idx) {
    if (!v) return SOV_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return sov_fail(SOV_ERR_FORMAT, "hub tree entry %zu: size is not a non-negative integer", idx);
    *out = (uint64_t)json_integer_value(v);
    *has = true;
    return SOV_OK;
}

static sov_status parse_entry(json_t *e, size_t idx, pull_file *f, bool *keep) {
    *keep = false;
    if (!json_is_object(e)) return sov_fail(SOV_ERR_FORMAT, "hub tree entry %zu is not an object", idx);
    const char *type = json_string_value(json_object_get(e, "type"));
    if (!type || strcmp(type, "file") != 0) return SOV_OK; /* directories and the like */
    json_t *path = json_object_get(e, "path");
    if (!json_is_string(path)) return sov_fail(SOV_ERR_FORMAT, "hub tree entry %zu has no string path", idx);
    const char *p = json_string_value(path);
    if (strlen(p) != json_string_length(path) || !pull_path_ok(p))
        return SOV_OK; /* never follow such a path */
    memset(f, 0, sizeof *f);
    sov_status st = size_of(json_object_get(e, "size"), &f->size, &f->has_size, idx);
    if (st) return st;
    json_t *lfs = json_object_get(e, "lfs");
    if (lfs && !json_is_null(lfs)) {
        if (!json_is_object(lfs))
            return sov_fail(SOV_ERR_FORMAT, "hub tree entry %zu: lfs is not an object", idx);
        json_t *oid = json_object_get(lfs, "oid");
        if (oid) {
            if (!json_is_string(oid) || !hex64(json_string_value(oid), json_string_length(oid), f->sha256))
                return sov_fail(SOV_ERR_FORMAT, "hub tree entry %zu (%s): lfs.oid is not a SHA-256", idx, p);
        }
        st = size_of(json_object_get(lfs, "size"), &f->size, &f->has_size, idx);
        if (st) return st;
    }
    f->path = strdup(p);
    if (!f->path) return sov_fail(SOV_ERR_NOMEM, "out of memory");
    *keep = true;
    return SOV_OK;
}

sov_status pull_tree_parse(const char *json, size_t len, pull_tree *out) {
    memset(out, 0, sizeof *out);
    if (len > PULL_TREE_MAX)
        return sov_fail(SOV_ERR_FORMAT, "hub tree listing larger than %d bytes", PULL_TREE_MAX);
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return sov_fail(SOV_ERR_FORMAT, "hub tree listing is not JSON (line %d: %s)", err.line, err.text);
    sov_status st = SOV_OK;
    if (!json_is_array(root)) {
        st = sov_fail(SOV_ERR_FORMAT, "hub tree listing is not a JSON array");
        goto done;
    }
    const size_t n = json_array_size(root);
    if (n > PULL_TREE_FILES_MAX) {
        st = sov_fail(SOV_ERR_FORMAT, "hub tree listing has more than %d entries", PULL_TREE_FILES_MAX);
        goto done;
    }
    out->files = calloc(n ? n : 1, sizeof *out->files);
    if (!out->files) {
        st = sov_fail(SOV_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n && !st; i++) {
        bool keep;
        st = parse_entry(json_array_get(root, i), i, &out->files[out->n], &keep);
        if (!st && keep) out->n++;
    }
done:
    json_decref(root);
    if (st) pull_tree_free(out);
    return st;
}

void pull_tree_free(pull_tree *t) {
    for (size_t i = 0; i < t->n; i++)
        free(t->files[i].path);
    free(t->files);
    t->files = NULL;
    t->n = 0;
}

const pull_file *pull_tree_find(const pull_tree *t, const char *path) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->files[i].path, path) == 0) return &t->files[i];
    return NULL;
}

/* A *.gguf file that is a model: not a projector, imatrix or draft model, and not the
 * second or later part of a split (NAME-0000I-of-0000N.gguf). */
static bool is_model_file(const char *path) {
    if (!ends_with_ci(path, ".gguf")) return false;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    static const char *const not_models[] = {"mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-"};
    for (size_t i = 0; i < sizeof not_models / sizeof not_models[0]; i++)
        if (strcasestr(base, not_models[i])) return false;
    const size_t n = strlen(base);
    /* -00002-of-00003.gguf: 20 characters */
    if (n >= 20 && base[n - 20] == '-' && strncmp(base + n - 14, "-of-", 4) == 0) {
        int idx = 0;
        for (size_t i = n - 19; i < n - 14; i++) {
            if (!isdigit((unsigned char)base[i])) return true;
            idx = idx * 10 + (base[i] - '0');
        }
        return idx == 1;
    }
    return true;
}

/* Whether path contains tag followed by '.' or '-', case-insensitively. */
static bool has_tag(const char *path, const char *tag) {
    const size_t m = strlen(tag);
    for (const char *p = path; (p = strcasestr(p, tag)) != NULL; p++)
        if (p[m] == '.' || p[m] == '-') return true;
    return false;
}

const pull_file *pull_tree_pick(const pull_tree *t, const char *quant) {
    static const char *const defaults[] = {"Q4_K_M", "Q8_0"};
    const char *one[] = {quant};
    const char *const *tags = quant && *quant ? one : defaults;
    const size_t n_tags = quant && *quant ? 1 : 2;
    for (size_t k = 0; k < n_tags; k++)
        for (size_t i = 0; i < t->n; i++)
            if (is_model_file(t->files[i].path) && has_tag(t->files[i].path, tags[k])) return &t->files[i];
    if (quant && *quant) return NULL;
    for (size_t i = 0; i < t->n; i++)
        if (is_model_file(t->files[i].path)) return &t->files[i];
    return NULL;
}

bool pull_etag_sha256(const char *value, size_t len, char hex[65]) {
    while (len && (*value == ' ' || *value == '\t'))
        value++, len--;
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t' || value[len - 1] == '\r' ||
                   value[len - 1] == '\n'))
        len--;
    if (len >= 2 && value[0] == 'W' && value[1] == '/') value += 2, len -= 2;
    if (len >= 2 && value[0] == '"' && value[len - 1] == '"') value++, len -= 2;
    return hex64(value, len, hex);
}

char *pull_url(const char *endpoint, const char *rest) {
    size_t en = strlen(endpoint);
    while (en && endpoint[en - 1] == '/')
        en--;
    const size_t rn = strlen(rest);
    char *url = malloc(en + 1 + rn * 3 + 1);
    if (!url) return NULL;
    memcpy(url, endpoint, en);
    size_t o = en;
    url[o++] = '/';
    static const char hexd[] = "0123456789ABCDEF";
    for (size_t i = 0; i < rn; i++) {
        const unsigned char c = (unsigned char)rest[i];
        if (isalnum(c) || c == '.' || c == '_' || c == '~' || c == '/' || c == '-' || c == '?' || c == '=' ||
            c == '&') {
            url[o++] = (char)c;
        } else {
            url[o++] = '%';
            url[o++] = hexd[c >> 4];
            url[o++] = hexd[c & 15];
        }
    }
    url[o] = '\0';
    return url;
}
