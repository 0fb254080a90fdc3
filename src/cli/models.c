/* models.c - `sov models [DIR]`: the GGUF models in a folder, one line each: name,
 * architecture, file type, size, SHA-256 (from the digest cache sov serve keeps, or
 * computed with --hash) and signature status (checked against --trusted-keys when given). */
#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "gguf/gguf.h"
#include "model/digest_cache.h"
#include "pull/pull.h"
#include "quant/quant.h"
#include "sign/sign.h"

static void help(FILE *f) {
    fprintf(f, "usage: sov models [DIR] [--trusted-keys DIR] [--state-dir DIR] [--hash] [--json]\n\n"
               "Lists the GGUF models in DIR (default: models): name, architecture, file type, size,\n"
               "SHA-256 and signature. The hash comes from the digest cache in the state folder\n"
               "(" CLI_DIGEST_CACHE_FILE
               ", written by sov serve; --state-dir, default $HOME/.local/state/sov),\n"
               "else '-' unless --hash computes it. Signatures (MODEL.gguf.sig) are checked against\n"
               "--trusted-keys DIR when given (which needs the hash), else only named.\n"
               "Unfinished downloads (DIR/" PULL_PARTIAL_DIR ") are not models and are not listed.\n");
}

/* llama.cpp's general.file_type numbering (include/llama.h, LLAMA_FTYPE_*) */
static const char *file_type_name(uint32_t t) {
    static const char *const names[] = {
        [0] = "F32",      [1] = "F16",      [2] = "Q4_0",    [3] = "Q4_1",    [7] = "Q8_0",
        [8] = "Q5_0",     [9] = "Q5_1",     [10] = "Q2_K",   [11] = "Q3_K_S", [12] = "Q3_K_M",
        [13] = "Q3_K_L",  [14] = "Q4_K_S",  [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M",
        [18] = "Q6_K",    [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S", [22] = "IQ3_XS",
        [23] = "IQ3_XXS", [24] = "IQ1_S",   [25] = "IQ4_NL", [26] = "IQ3_S",  [27] = "IQ3_M",
        [28] = "IQ2_S",   [29] = "IQ2_M",   [30] = "IQ4_XS", [31] = "IQ1_M",  [32] = "BF16",
        [36] = "TQ1_0",   [37] = "TQ2_0",
    };
    return t < sizeof names / sizeof names[0] && names[t] ? names[t] : NULL;
}

typedef struct entry {
    char name[256];
    char arch[64];
    char type[32];
    uint64_t size;
    char sha256[65];
    char signature[300];
    char error[300];
} entry;

static void describe(const char *dir, const char *name, const char *cache, const sign_trust *trust, bool hash,
                     entry *e) {
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    char path[4096 + 256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    if (stat(path, &sb) == 0) e->size = (uint64_t)sb.st_size;
    gguf_file *f;
    if (gguf_open(path, &f) != SOV_OK) {
        snprintf(e->error, sizeof e->error, "not a readable GGUF file: %s", sov_last_error());
        snprintf(e->arch, sizeof e->arch, "?");
        snprintf(e->type, sizeof e->type, "?");
    } else {
        if (!gguf_get_cstr(f, "general.architecture", e->arch, sizeof e->arch))
            snprintf(e->arch, sizeof e->arch, "?");
        uint32_t ft;
        const char *tn = gguf_get_u32(f, "general.file_type", &ft) ? file_type_name(ft) : NULL;
        if (!tn && f->n_tensors) { /* the type of most bytes */
            uint64_t bytes[64] = {0}, best = 0;
            for (uint64_t i = 0; i < f->n_tensors; i++)
                if (f->tensors[i].type < 64) bytes[f->tensors[i].type] += f->tensors[i].nbytes;
            for (uint32_t t = 0; t < 64; t++)
                if (bytes[t] > best) best = bytes[t], tn = sov_type_name(t);
        }
        snprintf(e->type, sizeof e->type, "%s", tn ? tn : "?");
        gguf_close(f);
    }
    digest_key k;
    if (cache && digest_key_of_path(path, &k) == SOV_OK) digest_cache_lookup(cache, &k, e->sha256);
    if (!e->sha256[0] && (hash || trust)) {
        uint64_t size;
        if (sign_file_sha256(path, e->sha256, &size) != SOV_OK) e->sha256[0] = '\0';
    }
    char sig[4096 + 260];
    snprintf(sig, sizeof sig, "%s.sig", path);
    sign_record rec;
    const sov_status st = sign_record_read(sig, &rec);
    if (st == SOV_ERR_NOT_FOUND) {
        snprintf(e->signature, sizeof e->signature, "unsigned");
    } else if (st) {
        snprintf(e->signature, sizeof e->signature, "malformed signature file");
    } else if (!trust) {
        snprintf(e->signature, sizeof e->signature, "signed by key %s (not checked: no --trusted-keys)",
                 rec.key_id);
    } else {
        char why[1024];
        sign_verdict v = sign_check_before_load(trust, path, NULL, &rec, why, sizeof why);
        if (v == SIGN_OK) v = sign_check_after_load(&rec, path, e->sha256, e->size, why, sizeof why);
        if (v == SIGN_OK)
            snprintf(e->signature, sizeof e->signature, "good, key %s", rec.key_id);
        else
            snprintf(e->signature, sizeof e->signature, "%s", sign_verdict_name(v));
    }
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cmd_models(int argc, char **argv) {
    const char *dir = NULL, *trusted = NULL, *state = NULL;
    bool hash = false, json = false, bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            return 0;
        } else if (cli_flag(argv, &i, "--hash")) {
            hash = true;
        } else if (cli_flag(argv, &i, "--json")) {
            json = true;
        } else if (cli_opt_str(argc, argv, &i, "--trusted-keys", &trusted, &bad) ||
                   cli_opt_str(argc, argv, &i, "--state-dir", &state, &bad)) {
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "sov models: unknown option '%s'; see sov models --help\n", argv[i]);
            return 2;
        } else if (!dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "sov models: one folder at a time: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    if (bad) return 2;
    if (!dir) dir = "models";
    sign_trust *trust = NULL;
    if (trusted && sign_trust_load_dir(trusted, &trust) != SOV_OK)
        return cli_status_error("models", SOV_ERR_ARG);
    char sbuf[4096], cache[4096 + 64];
    const char *sd = cli_state_dir(NULL, state, sbuf, sizeof sbuf);
    if (sd) snprintf(cache, sizeof cache, "%s/" CLI_DIGEST_CACHE_FILE, sd);
    DIR *d = opendir(dir);
    if (!d) {
        sign_trust_free(trust);
        return cli_error("models", "cannot read the folder %s: %m", dir);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        const size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 6 || strcasecmp(de->d_name + len - 5, ".gguf") != 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(names, cap * sizeof *names);
            if (!p) break;
            names = p;
        }
        if (!(names[n] = strdup(de->d_name))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_name);
    json_t *arr = json ? json_array() : NULL;
    if (!json)
        printf("%-40s %-10s %-8s %12s  %-64s  %s\n", "NAME", "ARCH", "TYPE", "BYTES", "SHA256", "SIGNATURE");
    for (size_t i = 0; i < n; i++) {
        entry e;
        describe(dir, names[i], sd ? cache : NULL, trust, hash, &e);
        if (json) {
            json_t *o =
                json_pack("{s:s, s:s, s:s, s:I, s:s?, s:s, s:s?}", "name", e.name, "arch", e.arch, "type",
                          e.type, "bytes", (json_int_t)e.size, "sha256", e.sha256[0] ? e.sha256 : NULL,
                          "signature", e.signature, "error", e.error[0] ? e.error : NULL);
            if (o) json_array_append_new(arr, o);
        } else {
            printf("%-40s %-10s %-8s %12" PRIu64 "  %-64s  %s\n", e.name, e.arch, e.type, e.size,
                   e.sha256[0] ? e.sha256 : "-", e.signature);
            if (e.error[0]) fprintf(stderr, "sov models: %s: %s\n", e.name, e.error);
        }
        free(names[i]);
    }
    free(names);
    if (json) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(arr);
    }
    sign_trust_free(trust);
    return 0;
}
