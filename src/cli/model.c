/* model.c - `sov model keygen | sign | verify`: signed models (docs/SIGNING.md), and the
 * check `sov serve` and `sov run` make with --trusted-keys.
 *
 * keygen writes an Ed25519 key pair; sign hashes a model file and writes MODEL.gguf.sig;
 * verify checks a model against one public key or a folder of trusted ones and exits 0,
 * or 1 with one line naming why (unsigned, malformed signature file, unknown key, bad
 * signature, altered, renamed); a usage error exits 2. The loaders split the same check
 * around sov_model_load so that the hash is the one computed while loading
 * (src/sign/sign.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "sign/sign.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: sov model keygen --out DIR\n"
            "       sov model sign --key SECRET.pem MODEL.gguf [--out SIG]\n"
            "       sov model verify (--pub KEY.pub | --trusted-keys DIR) [--sig SIG] MODEL.gguf\n\n"
            "Signed models: a signer signs a model file once; servers started with\n"
            "`sov serve --trusted-keys DIR` refuse a model that is unsigned, signed by a key not in DIR,\n"
            "or changed or renamed since it was signed (docs/SIGNING.md).\n\n"
            "  keygen     a new Ed25519 key pair in DIR (created when missing): " SIGN_SECRET_FILE "\n"
            "             (the secret, mode 0600: keep it private) and " SIGN_PUBLIC_FILE " (give it to\n"
            "             operators, who put it in their --trusted-keys folder). Never overwrites.\n"
            "  sign       writes MODEL.gguf.sig (or SIG): Ed25519 over the file's SHA-256, size and name\n"
            "  verify     checks MODEL.gguf against its signature file (MODEL.gguf.sig, or SIG); exit 0\n"
            "             when good, else 1 with the reason: unsigned, malformed signature file, signed\n"
            "             by an unknown key, bad signature, altered after signing, renamed after signing\n\n"
            "  --key FILE           the signer's secret key (PEM, PKCS#8, not readable by others)\n"
            "  --pub FILE           one trusted public key (PEM)\n"
            "  --trusted-keys DIR   every *.pub file in DIR is trusted\n"
            "  --sig FILE           the signature file, when not beside the model\n"
            "  --out DIR|FILE       keygen: the key folder; sign: where the signature goes\n");
}

/* A usage error: the message, and exit status 2 (refusals and failures are 1). */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "sov model: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

typedef struct model_opts {
    const char *out, *key, *pub, *trusted, *sig, *model;
} model_opts;

static int parse(int argc, char **argv, model_opts *o) {
    bool bad = false;
    for (int i = 2; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            exit(0);
        } else if (cli_opt_str(argc, argv, &i, "--out", &o->out, &bad) ||
                   cli_opt_str(argc, argv, &i, "--key", &o->key, &bad) ||
                   cli_opt_str(argc, argv, &i, "--pub", &o->pub, &bad) ||
                   cli_opt_str(argc, argv, &i, "--trusted-keys", &o->trusted, &bad) ||
                   cli_opt_str(argc, argv, &i, "--sig", &o->sig, &bad)) {
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("unknown option '%s'; see sov model --help", argv[i]);
        } else if (!o->model) {
            o->model = argv[i];
        } else {
            return usage_error("one model at a time: unexpected '%s'", argv[i]);
        }
    }
    return bad ? 2 : 0;
}

static int keygen(const model_opts *o) {
    if (!o->out) return usage_error("keygen needs --out DIR (the folder for the new key pair)");
    if (o->model) return usage_error("keygen takes no model; see sov model --help");
    char id[17];
    const sov_status st = sign_keygen(o->out, id);
    if (st) return cli_status_error("model keygen", st);
    printf("key %s\n  secret: %s/" SIGN_SECRET_FILE " (mode 0600: keep it private; it signs models)\n"
           "  public: %s/" SIGN_PUBLIC_FILE " (give it to operators: sov serve --trusted-keys DIR)\n",
           id, o->out, o->out);
    return 0;
}

static int sign(const model_opts *o) {
    if (!o->key || !o->model) return usage_error("sign needs --key SECRET.pem and a MODEL.gguf");
    char own[4096];
    const char *sig_path = o->out;
    if (!sig_path) {
        if (snprintf(own, sizeof own, "%s.sig", o->model) >= (int)sizeof own)
            return cli_error("model sign", "the model's path is too long");
        sig_path = own;
    }
    sign_key *key;
    sov_status st = sign_key_load_secret(o->key, &key);
    if (st) return cli_status_error("model sign", st);
    char sha[65];
    uint64_t size = 0;
    sign_record rec;
    st = sign_file_sha256(o->model, sha, &size);
    if (!st) st = sign_record_make(key, sign_base_name(o->model), size, sha, &rec);
    if (!st) st = sign_record_write(sig_path, &rec);
    sign_key_free(key);
    if (st) return cli_status_error("model sign", st);
    printf("signed %s (%llu bytes, sha256 %s) with key %s: %s\n", o->model, (unsigned long long)size, sha,
           rec.key_id, sig_path);
    return 0;
}

static int verify(const model_opts *o) {
    if (!o->model || (!o->pub == !o->trusted))
        return usage_error("verify needs a MODEL.gguf and one of --pub KEY.pub or --trusted-keys DIR");
    sign_trust *trust;
    sov_status st = o->pub ? sign_trust_load_key(o->pub, &trust) : sign_trust_load_dir(o->trusted, &trust);
    if (st) return cli_status_error("model verify", st);
    sign_record rec;
    char why[1024], sha[65];
    sign_verdict v = sign_check_before_load(trust, o->model, o->sig, &rec, why, sizeof why);
    uint64_t size = 0;
    if (v == SIGN_OK) {
        st = sign_file_sha256(o->model, sha, &size);
        v = st ? SIGN_ERROR : sign_check_after_load(&rec, o->model, sha, size, why, sizeof why);
        if (st) snprintf(why, sizeof why, "%s", sov_last_error());
    }
    sign_trust_free(trust);
    if (v != SIGN_OK) return cli_error("model verify", "%s", why);
    printf("%s: good signature by key %s (%llu bytes, sha256 %s)\n", o->model, rec.key_id,
           (unsigned long long)size, sha);
    return 0;
}

int cmd_model(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    model_opts o = {0};
    const int rc = parse(argc, argv, &o);
    if (rc) return rc;
    if (strcmp(argv[1], "keygen") == 0) return keygen(&o);
    if (strcmp(argv[1], "sign") == 0) return sign(&o);
    if (strcmp(argv[1], "verify") == 0) return verify(&o);
    return usage_error("unknown subcommand '%s': keygen, sign or verify (see sov model --help)", argv[1]);
}

/* ---- for the loaders ---- */

int cli_signed_before_load(const char *cmd, const char *trusted_dir, const char *model, sign_record *rec) {
    sign_trust *trust;
    const sov_status st = sign_trust_load_dir(trusted_dir, &trust);
    if (st) return cli_status_error(cmd, st);
    char why[1024];
    const sign_verdict v = sign_check_before_load(trust, model, NULL, rec, why, sizeof why);
    sign_trust_free(trust);
    return v == SIGN_OK ? 0 : cli_error(cmd, "model refused: %s", why);
}

int cli_signed_after_load(const char *cmd, const sign_record *rec, const char *model,
                          const sov_model_info *info) {
    char why[1024];
    const sign_verdict v = sign_check_after_load(rec, model, info->sha256, info->file_bytes, why, sizeof why);
    if (v != SIGN_OK) return cli_error(cmd, "model refused: %s", why);
    fprintf(stderr, "sov %s: model signed by trusted key %s (sha256 %s)\n", cmd, rec->key_id, info->sha256);
    return 0;
}
