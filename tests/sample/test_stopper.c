/* Stop strings over streamed text: a stop split across pieces is caught, a possible
 * prefix is held back and released when it turns out not to be a stop, nothing after a
 * stop is ever released, the stop that completes first wins however the text is cut
 * (checked against a byte-at-a-time reference on random texts and cuts), overlapping
 * and self-overlapping stops, and UTF-8: feed never ends its output inside a character,
 * flush releases everything, invalid bytes pass. */
#include "test.h"

#include "sov.h"

typedef struct result {
    char text[2048];
    size_t len;
    bool stopped;
} result;

/* Feeds text cut at the given offsets (ascending, within len), then flushes unless it
 * stopped. When chunks is not NULL, checks that no feed's output ends inside a UTF-8
 * character of valid text. */
static void stream_cuts(const char *const *stops, size_t n_stops, const char *text, size_t len, const size_t *cuts,
                        size_t n_cuts, bool utf8_check, result *r) {
    sov_stopper *s;
    CHECK_EQ(sov_stopper_new(stops, n_stops, &s), SOV_OK);
    r->len = 0;
    r->stopped = false;
    size_t prev = 0;
    for (size_t i = 0; i <= n_cuts && !r->stopped; i++) {
        const size_t end = i < n_cuts ? cuts[i] : len;
        const char *o;
        const size_t k = sov_stopper_feed(s, text + prev, end - prev, &o, &r->stopped);
        if (utf8_check && k) /* the next byte of the whole text must start a character */
            CHECK_MSG(r->len + k == len || ((unsigned char)text[r->len + k] & 0xC0) != 0x80,
                      "feed released %zu bytes ending inside a character", r->len + k);
        memcpy(r->text + r->len, o, k);
        r->len += k;
        prev = end;
    }
    if (!r->stopped) {
        const char *o;
        const size_t k = sov_stopper_flush(s, &o);
        memcpy(r->text + r->len, o, k);
        r->len += k;
    }
    r->text[r->len] = '\0';
    sov_stopper_free(s);
}

/* Feeds NUL-terminated pieces; returns everything released. */
static const char *stream(const char *const *stops, size_t n_stops, const char *const *pieces, size_t n, bool *stopped) {
    static char text[2048];
    static result r;
    size_t cuts[64], len = 0;
    for (size_t i = 0; i < n; i++) {
        strcpy(text + len, pieces[i]);
        len += strlen(pieces[i]);
        cuts[i] = len;
    }
    stream_cuts(stops, n_stops, text, len, cuts, n ? n - 1 : 0, false, &r);
    *stopped = r.stopped;
    return r.text;
}

static void no_stops_pass_everything_through(void) {
    const char *pieces[] = {"Hello", ", ", "world"};
    bool st;
    CHECK_STREQ(stream(NULL, 0, pieces, 3, &st), "Hello, world");
    CHECK(!st);
}

static void stop_split_across_pieces_is_caught(void) {
    const char *stops[] = {"\nUser:"};
    const char *pieces[] = {"Sure.", "\n", "Us", "er:", " more"};
    bool st;
    CHECK_STREQ(stream(stops, 1, pieces, 5, &st), "Sure.");
    CHECK(st);
}

static void held_prefix_is_released_when_it_is_not_a_stop(void) {
    const char *stops[] = {"STOP"};
    const char *pieces[] = {"a ST", "ART b", " STO", "P!", "x"};
    bool st;
    CHECK_STREQ(stream(stops, 1, pieces, 5, &st), "a START b ");
    CHECK(st);
    const char *p2[] = {"end S", "T"};
    CHECK_STREQ(stream(stops, 1, p2, 2, &st), "end ST"); /* flush releases the held prefix */
    CHECK(!st);
    /* exactly what is held: the possible prefix and no more */
    sov_stopper *s;
    CHECK_EQ(sov_stopper_new(stops, 1, &s), SOV_OK);
    const char *o;
    CHECK_EQ(sov_stopper_feed(s, "xyzSTO", 6, &o, &st), 3);
    CHECK(!st && memcmp(o, "xyz", 3) == 0);
    CHECK_EQ(sov_stopper_feed(s, "O", 1, &o, &st), 4); /* "STOO": no tail is a prefix */
    CHECK(memcmp(o, "STOO", 4) == 0);
    sov_stopper_free(s);
}

static void the_stop_that_completes_first_wins(void) {
    const char *stops[] = {"abcd", "bc", "xyz"};
    const char *pieces[] = {"12ab", "cd"};
    bool st;
    CHECK_STREQ(stream(stops, 3, pieces, 2, &st), "12a"); /* "bc" ends before "abcd" */
    CHECK(st);
    const char *whole[] = {"12abcd"};
    CHECK_STREQ(stream(stops, 3, whole, 1, &st), "12a"); /* the same in one piece */
    /* of stops ending at the same byte, the longest */
    const char *s2[] = {"\n", "a\n"};
    const char *p2[] = {"xa\nyy"};
    CHECK_STREQ(stream(s2, 2, p2, 1, &st), "x");
}

static void self_overlapping_stop_is_found(void) {
    const char *stops[] = {"aab"};
    const char *pieces[] = {"a", "a", "a", "b", "c"}; /* "aaab": the stop starts at 1 */
    bool st;
    CHECK_STREQ(stream(stops, 1, pieces, 5, &st), "a");
    CHECK(st);
    const char *s2[] = {"abab"};
    const char *p2[] = {"aba", "ba", "b"}; /* "ababab": at 0 */
    CHECK_STREQ(stream(s2, 1, p2, 3, &st), "");
    CHECK(st);
}

/* Reference: where a byte-at-a-time reader stops (the first end, longest at that end). */
static size_t reference_stop(const char *const *stops, size_t n_stops, const char *t, size_t len, bool *stopped) {
    for (size_t end = 1; end <= len; end++) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < n_stops; i++) {
            const size_t k = strlen(stops[i]);
            if (k && k <= end && memcmp(t + end - k, stops[i], k) == 0 && end - k < best) best = end - k;
        }
        if (best != SIZE_MAX) {
            *stopped = true;
            return best;
        }
    }
    *stopped = false;
    return len;
}

static void any_cutting_of_the_text_gives_the_same_output(void) {
    /* random texts over a small alphabet (so stops occur and overlap) with a 2-byte and
     * a 4-byte character, random stops among them, random cuts at any byte */
    static const char *const atoms[] = {"a", "b", "c", "\xc3\xa9", "\xf0\x9f\x99\x82"};
    test_rng rng = {20241124};
    int stopped_runs = 0;
    for (int run = 0; run < 3000; run++) {
        char text[256], stop_buf[3][32];
        size_t len = 0;
        const int n_atoms = 1 + (int)(test_rng_next(&rng) % 40);
        for (int i = 0; i < n_atoms; i++) {
            const char *a = atoms[test_rng_next(&rng) % 5];
            memcpy(text + len, a, strlen(a));
            len += strlen(a);
        }
        const char *stops[3];
        const size_t n_stops = 1 + test_rng_next(&rng) % 3;
        for (size_t i = 0; i < n_stops; i++) {
            size_t sl = 0;
            const int n = 1 + (int)(test_rng_next(&rng) % 4);
            for (int j = 0; j < n; j++) {
                const char *a = atoms[test_rng_next(&rng) % 5];
                memcpy(stop_buf[i] + sl, a, strlen(a));
                sl += strlen(a);
            }
            stop_buf[i][sl] = '\0';
            stops[i] = stop_buf[i];
        }
        size_t cuts[16], n_cuts = test_rng_next(&rng) % 16;
        for (size_t i = 0; i < n_cuts; i++) cuts[i] = test_rng_next(&rng) % (len + 1);
        for (size_t i = 1; i < n_cuts; i++) /* ascending */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                const size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        bool want_stop;
        const size_t want = reference_stop(stops, n_stops, text, len, &want_stop);
        stopped_runs += want_stop;
        result r;
        stream_cuts(stops, n_stops, text, len, cuts, n_cuts, true, &r);
        CHECK_MSG(r.stopped == want_stop && r.len == want && memcmp(r.text, text, want) == 0,
                  "run %d: released %zu bytes (stopped %d), expected %zu (stopped %d)", run, r.len, r.stopped, want,
                  want_stop);
    }
    CHECK(stopped_runs > 500 && stopped_runs < 2900); /* both outcomes were exercised */
}

static void nothing_after_a_stop_is_released(void) {
    sov_stopper *s;
    const char *stops[] = {"</s>"};
    CHECK_EQ(sov_stopper_new(stops, 1, &s), SOV_OK);
    const char *o;
    bool st;
    CHECK_EQ(sov_stopper_feed(s, "ok</s>tail", 10, &o, &st), 2);
    CHECK(st && memcmp(o, "ok", 2) == 0);
    CHECK_EQ(sov_stopper_feed(s, "more", 4, &o, &st), 0);
    CHECK(st);
    CHECK_EQ(sov_stopper_flush(s, &o), 0);
    sov_stopper_free(s);
}

static void multibyte_text_and_stops(void) {
    const char *stops[] = {"끝"}; /* Hangul, 3 bytes */
    const char *pieces[] = {"안녕", "하세요 ", "\xeb\x81", "\x9d", "x"};
    bool st;
    CHECK_STREQ(stream(stops, 1, pieces, 5, &st), "안녕하세요 ");
    CHECK(st);
    const char *p2[] = {"한국어 🙂 ", "text"};
    CHECK_STREQ(stream(stops, 1, p2, 2, &st), "한국어 🙂 text");
}

static void feed_never_releases_half_a_character(void) {
    /* raw bytes one at a time, as byte-level BPE tokens may come */
    const char *text = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x82z"; /* a é € 🙂 z */
    sov_stopper *s;
    CHECK_EQ(sov_stopper_new(NULL, 0, &s), SOV_OK);
    const size_t expect[] = {1, 0, 2, 0, 0, 3, 0, 0, 0, 4, 1}; /* released per byte */
    const char *o;
    bool st;
    for (size_t i = 0; i < 11; i++) CHECK_EQ(sov_stopper_feed(s, text + i, 1, &o, &st), expect[i]);
    /* flush releases an incomplete character: the stream has ended */
    CHECK_EQ(sov_stopper_feed(s, "b\xf0\x9f", 3, &o, &st), 1);
    CHECK_EQ(sov_stopper_flush(s, &o), 2);
    CHECK(memcmp(o, "\xf0\x9f", 2) == 0);
    sov_stopper_free(s);
}

static void invalid_bytes_pass_through(void) {
    sov_stopper *s;
    CHECK_EQ(sov_stopper_new(NULL, 0, &s), SOV_OK);
    const char *o;
    bool st;
    CHECK_EQ(sov_stopper_feed(s, "\x80x", 2, &o, &st), 2);   /* a stray continuation byte */
    CHECK_EQ(sov_stopper_feed(s, "y\xff", 2, &o, &st), 2);   /* never a lead byte */
    CHECK_EQ(sov_stopper_feed(s, "\x9f\x99", 2, &o, &st), 2); /* continuations with no lead */
    CHECK_EQ(sov_stopper_feed(s, "\xc3", 1, &o, &st), 0);     /* a lead: held... */
    CHECK_EQ(sov_stopper_feed(s, "\xc3", 1, &o, &st), 1);     /* ...cut short by another lead */
    sov_stopper_free(s);
}

static void empty_stop_strings_are_ignored_and_bad_arguments_rejected(void) {
    const char *stops[] = {"", "z"};
    const char *pieces[] = {"abc"};
    bool st;
    CHECK_STREQ(stream(stops, 2, pieces, 1, &st), "abc");
    CHECK(!st);
    sov_stopper *s;
    CHECK_EQ(sov_stopper_new(NULL, 2, &s), SOV_ERR_ARG);
    CHECK(s == NULL);
}

int main(void) {
    RUN(no_stops_pass_everything_through);
    RUN(stop_split_across_pieces_is_caught);
    RUN(held_prefix_is_released_when_it_is_not_a_stop);
    RUN(the_stop_that_completes_first_wins);
    RUN(self_overlapping_stop_is_found);
    RUN(any_cutting_of_the_text_gives_the_same_output);
    RUN(nothing_after_a_stop_is_released);
    RUN(multibyte_text_and_stops);
    RUN(feed_never_releases_half_a_character);
    RUN(invalid_bytes_pass_through);
    RUN(empty_stop_strings_are_ignored_and_bad_arguments_rejected);
    TEST_EXIT();
}
