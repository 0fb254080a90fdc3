/* detok.c - token ids -> text: sov_token_to_piece and sov_detokenize.
 *
 * A token's piece depends on its attribute (llama.cpp's rules):
 *   control / unknown  its text, only when special is set (else nothing);
 *   user-defined       its text as stored;
 *   normal             SPM, WordPiece: "▁" -> " "; BPE: each character of the byte alphabet back
 *                      to its byte (a character outside the alphabet stays as it is);
 *   byte               "<0xXX>" -> that single byte;
 *   unused, undefined  nothing.
 * sov_detokenize concatenates pieces. It inverts sov_tokenize exactly: it does not apply
 * llama.cpp's clean_up_tokenization_spaces (" ," -> ","), which would not; and with
 * remove_leading_space it drops the " " SentencePiece put before the text and before
 * the text after each special token. */
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "tok/tok_impl.h"
#include "tok/unicode.h"

typedef struct writer {
    char *buf;
    size_t cap;
    size_t n; /* full length, may exceed cap */
} writer;

static void put_bytes(writer *w, const char *s, size_t n, bool *lstrip) {
    if (*lstrip && n) {
        if (s[0] == ' ') {
            s++;
            n--;
        }
        *lstrip = false;
    }
    if (w->n < w->cap) memcpy(w->buf + w->n, s, SOV_MIN(n, w->cap - w->n));
    w->n += n;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Appends token t's piece; *lstrip drops one leading space (and is cleared once any
 * byte is written). */
static void piece(const sov_vocab *v, sov_token t, bool special, bool *lstrip, writer *w) {
    const tok_token *tk = &v->tokens[t];
    const uint16_t a = tk->attr;
    if (a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)) {
        if (special) put_bytes(w, tk->text, tk->len, lstrip);
        return;
    }
    if (a & TOK_ATTR_USER_DEFINED) {
        put_bytes(w, tk->text, tk->len, lstrip);
        return;
    }
    if (a & TOK_ATTR_NORMAL) {
        const uint8_t *s = (const uint8_t *)tk->text;
        const size_t n = tk->len;
        if (tok_escapes_space(v)) {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                    put_bytes(w, " ", 1, lstrip);
                    i += 3;
                } else {
                    size_t j = i + 1;
                    while (j < n && s[j] != 0xE2) j++;
                    put_bytes(w, (const char *)s + i, j - i, lstrip);
                    i = j;
                }
            }
            return;
        }
        for (size_t i = 0; i < n;) {
            size_t at = i;
            int bad = 0;
            uint32_t cp = tok_utf8_next(s, n, &i, &bad);
            int b = !bad && cp < SOV_ARRAY_LEN(v->cpt_byte) ? v->cpt_byte[cp] : -1;
            if (b >= 0) {
                char c = (char)b;
                put_bytes(w, &c, 1, lstrip);
            } else {
                put_bytes(w, (const char *)s + at, i - at, lstrip);
            }
        }
        return;
    }
    if (a & TOK_ATTR_BYTE) {
        int hi = tk->len == 6 ? hexval(tk->text[3]) : -1, lo = tk->len == 6 ? hexval(tk->text[4]) : -1;
        if (hi >= 0 && lo >= 0) {
            char c = (char)(hi * 16 + lo);
            put_bytes(w, &c, 1, lstrip);
        }
        return;
    }
}

int32_t sov_token_to_piece(const sov_vocab *v, sov_token t, bool special, char *buf, int32_t cap) {
    if (!v || cap < 0 || (!buf && cap > 0)) return -(int32_t)sov_fail(SOV_ERR_ARG, "sov_token_to_piece: bad arguments");
    if (t < 0 || t >= v->n_tokens)
        return -(int32_t)sov_fail(SOV_ERR_ARG, "sov_token_to_piece: token %d is outside the vocabulary of %d", t,
                                  v->n_tokens);
    writer w = {buf, (size_t)cap, 0};
    bool lstrip = false;
    piece(v, t, special, &lstrip, &w);
    return (int32_t)w.n;
}

int32_t sov_detokenize(const sov_vocab *v, const sov_token *tokens, int32_t n, bool special,
                       bool remove_leading_space, char *buf, int32_t cap) {
    if (!v || n < 0 || (!tokens && n) || cap < 0 || (!buf && cap > 0))
        return -(int32_t)sov_fail(SOV_ERR_ARG, "sov_detokenize: bad arguments");
    writer w = {buf, (size_t)cap, 0};
    const bool strip = remove_leading_space && (v->kind == TOK_SPM || v->kind == TOK_UGM) && v->add_space_prefix;
    bool lstrip = strip;
    for (int32_t i = 0; i < n; i++) {
        sov_token t = tokens[i];
        if (t < 0 || t >= v->n_tokens)
            return -(int32_t)sov_fail(SOV_ERR_ARG, "sov_detokenize: token %d (at %d) is outside the vocabulary of %d",
                                      t, i, v->n_tokens);
        bool after = strip && (v->tokens[t].attr & TOK_ATTR_SPECIAL);
        piece(v, t, special, &lstrip, &w);
        /* the text after a special token got its own " " prefix */
        if (after) lstrip = true;
        if (w.n > INT32_MAX) return -(int32_t)sov_fail(SOV_ERR_ARG, "sov_detokenize: text longer than 2 GiB");
    }
    if (w.n < w.cap) w.buf[w.n] = '\0';
    return (int32_t)w.n;
}
