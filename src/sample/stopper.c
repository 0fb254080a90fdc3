/* stopper.c - stop strings over streamed text.
 *
 * Text arrives in pieces (a token's bytes at a time). The stopper holds back the tail
 * of what it has that could still turn into a stop string or a UTF-8 character,
 * releases the rest, and when a stop string completes releases only the text before it
 * and then nothing more.
 *
 * Which stop wins: the one that completes first in the text, and of those ending at the
 * same byte the longest (earliest start). That is what a byte-by-byte reader would see,
 * so the output does not depend on how the text was cut into pieces: "abcd" with stops
 * "bc" and "abcd" stops at "bc" whether it came as "ab"+"cd" or in one piece.
 * (llama.cpp's server takes the earliest start within one token's text instead, which
 * depends on the tokenization.)
 *
 * The hold-back is the longest tail that is a proper prefix of some stop string; any
 * future match must start inside it (a match starting earlier would make a longer tail
 * a prefix), so released text can never be part of a stop, and the held text is short:
 * less than the longest stop string.
 *
 * UTF-8: feed never releases half a character. If the text ends with a lead byte and
 * fewer continuation bytes than it announces (at most 3 bytes), those are held until
 * the rest arrives, so callers may feed raw token bytes (byte-level BPE splits
 * characters across tokens) and print what comes out. Bytes that can never complete a
 * character (stray continuation bytes, 0xF8..0xFF, a lead cut short by another lead)
 * are not the stopper's business and pass through: holding them would stall the
 * stream, and repairing text is the detokenizer's choice, not this module's. flush
 * releases everything, an incomplete character included: generation has ended and the
 * caller decides how to show a truncated character. A stop match on valid UTF-8 always
 * begins on a character boundary (a stop string starts with a lead byte, never a
 * continuation byte), so the text before a stop is whole characters too. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "sov.h"

struct sov_stopper {
    char **stops;       /* [n] the non-empty stop strings */
    size_t *lens;       /* [n] their lengths */
    size_t n;
    char *held;         /* [held_cap] text not released yet */
    size_t held_len, held_cap;
    char *out;          /* [out_cap] what the last call released */
    size_t out_cap;
    bool done;          /* a stop string completed: nothing more is released */
};

sov_status sov_stopper_new(const char *const *stops, size_t n_stops, sov_stopper **out) {
    if (!out) return sov_fail(SOV_ERR_ARG, "stop strings: no output pointer");
    *out = NULL;
    if (n_stops && !stops) return sov_fail(SOV_ERR_ARG, "stop strings: %zu strings but no array", n_stops);
    sov_stopper *s = calloc(1, sizeof *s);
    if (!s) return sov_fail(SOV_ERR_NOMEM, "stop strings: out of memory");
    s->stops = calloc(n_stops ? n_stops : 1, sizeof *s->stops);
    s->lens = calloc(n_stops ? n_stops : 1, sizeof *s->lens);
    if (!s->stops || !s->lens) {
        sov_stopper_free(s);
        return sov_fail(SOV_ERR_NOMEM, "stop strings: out of memory");
    }
    for (size_t i = 0; i < n_stops; i++) {
        if (!stops[i] || !stops[i][0]) continue; /* an empty stop string would match everywhere: ignored */
        if (!(s->stops[s->n] = strdup(stops[i]))) {
            sov_stopper_free(s);
            return sov_fail(SOV_ERR_NOMEM, "stop strings: out of memory");
        }
        s->lens[s->n] = strlen(stops[i]);
        s->n++;
    }
    *out = s;
    return SOV_OK;
}

void sov_stopper_free(sov_stopper *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->stops[i]);
    free(s->stops);
    free(s->lens);
    free(s->held);
    free(s->out);
    free(s);
}

static bool reserve(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2) return false;
        c *= 2;
    }
    char *q = realloc(*p, c);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Moves the first n held bytes to the output buffer (NUL-terminated for convenience).
 * Out of memory: releases nothing (the text stays held). */
static size_t release(sov_stopper *s, size_t n, const char **out) {
    if (!reserve(&s->out, &s->out_cap, n + 1)) n = 0;
    if (s->out) {
        if (n) memcpy(s->out, s->held, n);
        s->out[n] = '\0';
        *out = s->out;
    }
    if (n) { /* (held may still be NULL when nothing was ever held) */
        memmove(s->held, s->held + n, s->held_len - n);
        s->held_len -= n;
    }
    return n;
}

/* The complete stop in held[from..) that ends first (the longest of those ending at
 * the same byte): its start, or SIZE_MAX. */
static size_t find_stop(const sov_stopper *s, size_t from) {
    size_t best_end = SIZE_MAX, best_at = SIZE_MAX;
    for (size_t i = 0; i < s->n; i++) {
        const size_t len = s->lens[i];
        for (size_t at = from; at + len <= s->held_len && at + len <= best_end; at++) {
            if (memcmp(s->held + at, s->stops[i], len) != 0) continue;
            if (at + len < best_end || at < best_at) {
                best_end = at + len;
                best_at = at;
            }
            break; /* later starts of this string end later */
        }
    }
    return best_at;
}

/* Bytes at the end of t[0..n) that begin a UTF-8 character not yet complete (0..3). */
static size_t utf8_partial_tail(const unsigned char *t, size_t n) {
    size_t cont = 0; /* continuation bytes at the very end */
    while (cont < 3 && cont < n && (t[n - 1 - cont] & 0xC0) == 0x80) cont++;
    if (cont == n) return 0;
    const unsigned char lead = t[n - 1 - cont];
    const size_t need = lead >= 0xF0 && lead <= 0xF4 ? 4 : lead >= 0xE0 && lead < 0xF0 ? 3
                        : lead >= 0xC2 && lead < 0xE0                                   ? 2
                                                                                        : 0;
    return need > cont + 1 ? cont + 1 : 0; /* an ASCII or invalid lead, or complete: none */
}

size_t sov_stopper_feed(sov_stopper *s, const char *text, size_t len, const char **out, bool *stopped) {
    *stopped = s->done;
    *out = "";
    if (s->done) return 0;
    if (len && !reserve(&s->held, &s->held_cap, s->held_len + len + 1)) return 0;
    /* a new match must end in the new text, so it starts at most longest-1 bytes before */
    size_t longest = 0;
    for (size_t i = 0; i < s->n; i++) longest = s->lens[i] > longest ? s->lens[i] : longest;
    const size_t from = s->held_len >= longest ? s->held_len - longest + 1 : 0;
    if (len) memcpy(s->held + s->held_len, text, len);
    s->held_len += len;

    const size_t at = find_stop(s, from);
    if (at != SIZE_MAX) {
        s->done = true;
        *stopped = true;
        const size_t n = release(s, at, out);
        s->held_len = 0;
        return n;
    }
    /* hold the longest tail that is a proper prefix of a stop string */
    size_t keep = 0;
    for (size_t i = 0; i < s->n; i++) {
        const size_t max = s->lens[i] - 1 < s->held_len ? s->lens[i] - 1 : s->held_len;
        for (size_t k = max; k > keep; k--)
            if (memcmp(s->held + s->held_len - k, s->stops[i], k) == 0) {
                keep = k;
                break;
            }
    }
    /* and never end the released text inside a character */
    const size_t partial = utf8_partial_tail((const unsigned char *)s->held, s->held_len - keep);
    return release(s, s->held_len - keep - partial, out);
}

size_t sov_stopper_flush(sov_stopper *s, const char **out) {
    *out = "";
    if (s->done) return 0;
    return release(s, s->held_len, out);
}
