/* policy.c - `sov policy`: check a data-handling policy file before a server uses it, and
 * run the redactor over text (what sov would store of it).
 *
 *   sov policy check FILE                        validate; print the policy it means
 *   sov policy redact [--policy FILE | --kinds LIST] [-f FILE | -p TEXT] [--counts]
 *                                                the text (stdin by default) with personal
 *                                                data replaced by [EMAIL], [PHONE], ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "policy/policy.h"
#include "redact/redact.h"

enum { MAX_INPUT = 256 << 20 };

static void help(FILE *f) {
    fprintf(f,
            "usage: sov policy check FILE\n"
            "       sov policy redact [--policy FILE | --kinds email,phone,rrn,card,ip] [-f FILE | -p TEXT]\n"
            "                         [--counts]\n\n"
            "check   validates a data-handling policy file (sov serve --policy FILE) and prints what it\n"
            "        means; an error names the line and exits 1. The format: docs/POLICY.md.\n"
            "redact  writes the text (standard input, -f FILE or -p TEXT) to standard output with\n"
            "        e-mail addresses, phone numbers, Korean resident registration numbers, card numbers\n"
            "        and IP addresses replaced by [EMAIL], [PHONE], [RRN], [CARD], [IP]: what sov stores\n"
            "        of a prompt under the policy.\n\n"
            "  --policy FILE   redact the kinds the policy's redact key lists\n"
            "  --kinds LIST    redact these kinds (default: all)\n"
            "  -f, --file FILE read the text from FILE\n"
            "  -p, --prompt T  the text itself\n"
            "  --counts        print the number of findings by kind on standard error\n");
}

static int check(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
            return help(stdout), 0;
        return cli_error("policy", "usage: sov policy check FILE");
    }
    sov_policy p;
    const sov_status st = policy_load(argv[1], &p);
    if (st) return cli_status_error("policy", st);
    char d[256];
    printf("%s: ok: %s\n", argv[1], policy_describe(&p, d, sizeof d));
    return 0;
}

static int parse_kinds(const char *list, uint32_t *out) {
    uint32_t kinds = 0;
    const char *s = list;
    while (*s) {
        const size_t n = strcspn(s, ",");
        uint32_t bit = 0;
        for (int k = 0; k < REDACT_KIND_COUNT; k++)
            if (strlen(redact_kind_name((redact_kind)k)) == n &&
                strncmp(s, redact_kind_name((redact_kind)k), n) == 0)
                bit = 1u << k;
        if (!bit)
            return cli_error("policy", "unknown kind '%.*s' in --kinds (kinds: email, phone, rrn, card, ip)",
                             (int)n, s);
        kinds |= bit;
        s += n + (s[n] == ',');
    }
    *out = kinds;
    return 0;
}

/* The whole of f (at most MAX_INPUT bytes) in a new buffer. */
static char *read_all(FILE *f, const char *name, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap >= MAX_INPUT) {
            fprintf(stderr, "sov policy: %s is larger than %d MB\n", name, MAX_INPUT >> 20);
            free(buf);
            return NULL;
        }
        char *p = realloc(buf, cap * 2);
        if (!p) free(buf);
        buf = p;
        cap *= 2;
    }
    if (!buf)
        fprintf(stderr, "sov policy: out of memory reading %s\n", name);
    else if (ferror(f)) {
        fprintf(stderr, "sov policy: cannot read %s\n", name);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int redact(int argc, char **argv) {
    const char *policy = NULL, *kinds_arg = NULL, *file = NULL, *text = NULL;
    bool bad = false, counts = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            return 0;
        } else if (cli_opt_str(argc, argv, &i, "--policy", &policy, &bad) ||
                   cli_opt_str(argc, argv, &i, "--kinds", &kinds_arg, &bad) ||
                   cli_opt_str(argc, argv, &i, "-f", &file, &bad) ||
                   cli_opt_str(argc, argv, &i, "--file", &file, &bad) ||
                   cli_opt_str(argc, argv, &i, "-p", &text, &bad) ||
                   cli_opt_str(argc, argv, &i, "--prompt", &text, &bad)) {
        } else if (cli_flag(argv, &i, "--counts")) {
            counts = true;
        } else {
            return cli_error("policy", "unknown option '%s'; see sov policy --help", argv[i]);
        }
    }
    if (bad) return 2;
    if (policy && kinds_arg) return cli_error("policy", "give --policy or --kinds, not both");
    if (file && text) return cli_error("policy", "give -f or -p, not both");
    uint32_t kinds = POLICY_REDACT_ALL;
    if (kinds_arg && parse_kinds(kinds_arg, &kinds)) return 1;
    if (policy) {
        sov_policy p;
        const sov_status st = policy_load(policy, &p);
        if (st) return cli_status_error("policy", st);
        kinds = p.redact;
    }
    size_t len = 0;
    char *in = NULL;
    if (text) {
        len = strlen(text);
    } else {
        FILE *f = file ? fopen(file, "rb") : stdin;
        if (!f) return cli_error("policy", "cannot open %s", file);
        in = read_all(f, file ? file : "standard input", &len);
        if (file) fclose(f);
        if (!in) return 1;
    }
    redact_counts rc = {0};
    size_t out_len;
    char *out = redact_dup(kinds, text ? text : in, len, &out_len, &rc);
    free(in);
    if (!out) return cli_error("policy", "out of memory");
    const bool ok = fwrite(out, 1, out_len, stdout) == out_len && fflush(stdout) == 0;
    free(out);
    if (!ok) return cli_error("policy", "cannot write the output");
    if (counts)
        for (int k = 0; k < REDACT_KIND_COUNT; k++)
            fprintf(stderr, "%s %llu\n", redact_kind_name((redact_kind)k), (unsigned long long)rc.n[k]);
    return 0;
}

int cmd_policy(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "check") == 0) return check(argc - 1, argv + 1);
    if (strcmp(argv[1], "redact") == 0) return redact(argc - 1, argv + 1);
    return cli_error("policy", "unknown subcommand '%s'; use check or redact (sov policy --help)", argv[1]);
}
