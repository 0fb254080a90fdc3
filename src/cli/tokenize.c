/* tokenize.c - `sov tokenize` (text -> ids) and `sov detokenize` (ids -> text) on any GGUF
 * file with a tokenizer, vocabulary-only files included. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void tokenize_help(FILE *f) {
    fprintf(f,
            "usage: sov tokenize -m MODEL.gguf [-p TEXT | -f FILE] [--no-bos] [--pieces] [--no-special]\n\n"
            "Prints the token ids of the text on one line, separated by spaces.\n"
            "  -m, --model FILE   GGUF file with a tokenizer (a vocabulary-only file will do)\n"
            "  -p, --prompt TEXT  the text (else -f, else standard input)\n"
            "  -f, --file FILE    read the text from FILE\n"
            "  --no-bos           do not add the BOS/EOS tokens the vocabulary asks for\n"
            "  --pieces           print each token as id:'piece'\n"
            "  --no-special       text spelling a control token (\"<|im_end|>\") stays text\n");
}

static void detokenize_help(FILE *f) {
    fprintf(f,
            "usage: sov detokenize -m MODEL.gguf [--no-special] ID...\n\n"
            "Prints the text of the token ids (control tokens such as <s> included unless\n"
            "--no-special; the space SentencePiece adds at the start is removed).\n");
}

/* Reads a whole stream; NULL on failure. */
static char *read_all(FILE *in, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                return NULL;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, in);
        n += got;
        if (got == 0) break;
    }
    if (ferror(in)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Prints a piece with C-style escapes for quotes, backslashes and control bytes. */
static void print_piece(const char *s, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\'' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else putchar(c);
    }
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool bos = true, pieces = false, special = true, bad = false;
    for (int i = 1; i < argc; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            tokenize_help(stdout);
            return 0;
        } else if (cli_opt_str(argc, argv, &i, "-m", &model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--model", &model, &bad) ||
                   cli_opt_str(argc, argv, &i, "-p", &prompt, &bad) ||
                   cli_opt_str(argc, argv, &i, "--prompt", &prompt, &bad) ||
                   cli_opt_str(argc, argv, &i, "-f", &file, &bad) ||
                   cli_opt_str(argc, argv, &i, "--file", &file, &bad)) {
            if (bad) return 2;
        } else if (cli_flag(argv, &i, "--no-bos")) {
            bos = false;
        } else if (cli_flag(argv, &i, "--pieces")) {
            pieces = true;
        } else if (cli_flag(argv, &i, "--no-special")) {
            special = false;
        } else {
            return cli_error("tokenize", "unknown argument '%s'; see sov tokenize --help", argv[i]);
        }
    }
    if (!model) return cli_error("tokenize", "no model given: -m MODEL.gguf (see sov tokenize --help)");
    if (prompt && file) return cli_error("tokenize", "give the text with -p or -f, not both");

    char *text;
    size_t len;
    if (prompt) {
        len = strlen(prompt);
        text = malloc(len + 1);
        if (text) memcpy(text, prompt, len + 1);
    } else {
        FILE *in = file ? fopen(file, "rb") : stdin;
        if (!in) return cli_error("tokenize", "cannot open '%s': %s", file, strerror(errno));
        text = read_all(in, &len);
        if (file) fclose(in);
        if (!text) return cli_error("tokenize", "cannot read '%s'", file ? file : "standard input");
    }
    if (!text) return cli_error("tokenize", "out of memory");

    sov_vocab *v;
    sov_status st = sov_vocab_load(model, &v);
    if (st) {
        free(text);
        return cli_status_error("tokenize", st);
    }
    int32_t n = sov_tokenize(v, text, len, bos, special, NULL, 0);
    sov_token *ids = n > 0 ? malloc((size_t)n * sizeof *ids) : NULL;
    if (n < 0 || (n > 0 && !ids)) {
        free(text);
        sov_vocab_free(v);
        return n < 0 ? cli_status_error("tokenize", (sov_status)-n) : cli_error("tokenize", "out of memory");
    }
    if (n > 0) sov_tokenize(v, text, len, bos, special, ids, n);
    char piece[256];
    for (int32_t i = 0; i < n; i++) {
        if (i) putchar(' ');
        printf("%d", ids[i]);
        if (pieces) {
            int32_t k = sov_token_to_piece(v, ids[i], true, piece, sizeof piece);
            if (k < 0) k = 0;
            if (k > (int32_t)sizeof piece) k = (int32_t)sizeof piece;
            fputs(":'", stdout);
            print_piece(piece, k);
            putchar('\'');
        }
    }
    putchar('\n');
    free(ids);
    free(text);
    sov_vocab_free(v);
    return 0;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool special = true, bad = false;
    size_t cap_ids = (size_t)argc + 16;
    sov_token *ids = calloc(cap_ids, sizeof *ids);
    int32_t n = 0;
    if (!ids) return cli_error("detokenize", "out of memory");
    for (int i = 1; i < argc; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            detokenize_help(stdout);
            free(ids);
            return 0;
        } else if (cli_opt_str(argc, argv, &i, "-m", &model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--model", &model, &bad)) {
            if (bad) {
                free(ids);
                return 2;
            }
        } else if (cli_flag(argv, &i, "--no-special")) {
            special = false;
        } else {
            /* ids, also accepted as one argument "1 2 3" or "[1, 2, 3]" */
            char *p = argv[i];
            for (;;) {
                while (*p == ' ' || *p == ',' || *p == '[' || *p == ']' || *p == '\t' || *p == '\n') p++;
                if (!*p) break;
                char *end;
                errno = 0;
                long x = strtol(p, &end, 10);
                if (end == p || errno || x < 0 || x > INT32_MAX) {
                    free(ids);
                    return cli_error("detokenize", "'%s' is not a token id; see sov detokenize --help", argv[i]);
                }
                if ((size_t)n == cap_ids) {
                    sov_token *more = realloc(ids, cap_ids * 2 * sizeof *ids);
                    if (!more) {
                        free(ids);
                        return cli_error("detokenize", "out of memory");
                    }
                    ids = more;
                    cap_ids *= 2;
                }
                ids[n++] = (sov_token)x;
                p = end;
            }
        }
    }
    if (!model) {
        free(ids);
        return cli_error("detokenize", "no model given: -m MODEL.gguf (see sov detokenize --help)");
    }
    sov_vocab *v;
    sov_status st = sov_vocab_load(model, &v);
    if (st) {
        free(ids);
        return cli_status_error("detokenize", st);
    }
    int32_t len = sov_detokenize(v, ids, n, special, true, NULL, 0);
    char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (len < 0 || !text) {
        free(ids);
        sov_vocab_free(v);
        return len < 0 ? cli_status_error("detokenize", (sov_status)-len) : cli_error("detokenize", "out of memory");
    }
    sov_detokenize(v, ids, n, special, true, text, len + 1);
    fwrite(text, 1, (size_t)len, stdout);
    putchar('\n');
    free(text);
    free(ids);
    sov_vocab_free(v);
    return 0;
}
