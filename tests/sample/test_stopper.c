/* Stop strings over streamed text: a stop split across pieces is caught, a possible
 * prefix is held back and released when it turns out not to be a stop, nothing after a
 * stop is ever released, multibyte text passes intact. */
#include "test.h"

#include "sov.h"

/* Feeds pieces; returns everything released (and whether it stopped). */
static char *stream(const char *const *stops, size_t n_stops, const char *const *pieces, size_t n, bool *stopped) {
    sov_stopper *s;
    CHECK_EQ(sov_stopper_new(stops, n_stops, &s), SOV_OK);
    static char out[1024];
    size_t len = 0;
    *stopped = false;
    for (size_t i = 0; i < n && !*stopped; i++) {
        const char *o;
        const size_t k = sov_stopper_feed(s, pieces[i], strlen(pieces[i]), &o, stopped);
        memcpy(out + len, o, k);
        len += k;
    }
    if (!*stopped) {
        const char *o;
        const size_t k = sov_stopper_flush(s, &o);
        memcpy(out + len, o, k);
        len += k;
    }
    out[len] = '\0';
    sov_stopper_free(s);
    return out;
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
}

static void the_earliest_of_several_stops_wins(void) {
    const char *stops[] = {"bc", "abcd", "xyz"};
    const char *pieces[] = {"12ab", "cd"};
    bool st;
    CHECK_STREQ(stream(stops, 3, pieces, 2, &st), "12"); /* "abcd" starts first */
    CHECK(st);
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
    const char *stops[] = {"끝"};                  /* Hangul, 3 bytes */
    const char *pieces[] = {"안녕", "하세요 ", "\xeb\x81", "\x9d", "x"};
    bool st;
    CHECK_STREQ(stream(stops, 1, pieces, 5, &st), "안녕하세요 ");
    CHECK(st);
    const char *p2[] = {"한국어 🙂 ", "text"};
    CHECK_STREQ(stream(stops, 1, p2, 2, &st), "한국어 🙂 text");
}

static void empty_stop_strings_are_ignored(void) {
    const char *stops[] = {"", "z"};
    const char *pieces[] = {"abc"};
    bool st;
    CHECK_STREQ(stream(stops, 2, pieces, 1, &st), "abc");
    CHECK(!st);
}

int main(void) {
    RUN(no_stops_pass_everything_through);
    RUN(stop_split_across_pieces_is_caught);
    RUN(held_prefix_is_released_when_it_is_not_a_stop);
    RUN(the_earliest_of_several_stops_wins);
    RUN(nothing_after_a_stop_is_released);
    RUN(multibyte_text_and_stops);
    RUN(empty_stop_strings_are_ignored);
    TEST_EXIT();
}
