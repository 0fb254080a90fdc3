/* stopper.c - stop strings over streamed text.
 *
 * Text arrives in pieces (one token's worth at a time). The stopper keeps back the
 * longest tail of what it holds that could still become a stop string, releases the
 * rest, and when a stop string is complete releases only the text before it. Pieces
 * are whole UTF-8 characters (the caller holds back partial ones), and a stop string is
 * valid UTF-8, so a held-back tail always starts on a character boundary. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "sov.h"

struct sov_stopper {
    char **stops;
    size_t *lens;
    size_t n;
    char *held;   /* text not yet released */
    size_t held_len, held_cap;
    char *out;    /* released text of the last call */
    size_t out_cap;
    bool done;
};

sov_status sov_stopper_new(const char *const *stops, size_t n_stops, sov_stopper **out) {
    *out = NULL;
    sov_stopper *s = calloc(1, sizeof *s);
    if (!s) return sov_fail(SOV_ERR_NOMEM, "stop strings: out of memory");
    s->stops = calloc(n_stops ? n_stops : 1, sizeof *s->stops);
    s->lens = calloc(n_stops ? n_stops : 1, sizeof *s->lens);
    if (!s->stops || !s->lens) {
        sov_stopper_free(s);
        return sov_fail(SOV_ERR_NOMEM, "stop strings: out of memory");
    }
    for (size_t i = 0; i < n_stops; i++) {
        if (!stops[i] || !stops[i][0]) continue; /* an empty stop string never matches */
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
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Moves the first n held bytes to the output. */
static size_t release(sov_stopper *s, size_t n, const char **out) {
    if (!reserve(&s->out, &s->out_cap, n + 1)) n = 0;
    if (n) memcpy(s->out, s->held, n);
    memmove(s->held, s->held + n, s->held_len - n);
    s->held_len -= n;
    *out = s->out ? s->out : "";
    return n;
}

size_t sov_stopper_feed(sov_stopper *s, const char *text, size_t len, const char **out, bool *stopped) {
    *stopped = s->done;
    *out = "";
    if (s->done) return 0;
    if (!reserve(&s->held, &s->held_cap, s->held_len + len + 1)) return 0;
    memcpy(s->held + s->held_len, text, len);
    s->held_len += len;
    /* a complete stop string: the earliest one ends the text */
    size_t first = (size_t)-1;
    for (size_t i = 0; i < s->n; i++) {
        if (s->lens[i] > s->held_len) continue;
        for (size_t at = 0; at + s->lens[i] <= s->held_len && at < first; at++)
            if (memcmp(s->held + at, s->stops[i], s->lens[i]) == 0) {
                first = at;
                break;
            }
    }
    if (first != (size_t)-1) {
        s->done = true;
        *stopped = true;
        const size_t n = release(s, first, out);
        s->held_len = 0;
        return n;
    }
    /* keep the longest tail that is a proper prefix of a stop string */
    size_t keep = 0;
    for (size_t i = 0; i < s->n; i++) {
        const size_t max = s->lens[i] - 1 < s->held_len ? s->lens[i] - 1 : s->held_len;
        for (size_t k = max; k > keep; k--)
            if (memcmp(s->held + s->held_len - k, s->stops[i], k) == 0) {
                keep = k;
                break;
            }
    }
    return release(s, s->held_len - keep, out);
}

size_t sov_stopper_flush(sov_stopper *s, const char **out) {
    *out = "";
    if (s->done) return 0;
    return release(s, s->held_len, out);
}
