/* test_openai_reply.c - the OpenAI shapes of a parsed chat reply: message.content null
 * beside tool_calls, reasoning_content, finish_reason "tool_calls", and the stream chunks
 * (tool_calls with index, id, type and function), read back with jansson. */
#include <jansson.h>

#include "server/openai.h"
#include "test.h"

static const oai_reply RP = {.kind = OAI_CHAT, .id = "chatcmpl-1", .created = 1, .model = "m", .top_logprobs = -1,
                             .parse = true, .reply = {.format = REPLY_HERMES, .think_tags = true, .id_seed = 9}};

static json_t *message_of(const char *text, const char **finish) {
    const oai_usage u = {1, 2, 0, 0, NULL};
    char *j = oai_final_json(&RP, text, strlen(text), NULL, 0, "stop", &u);
    json_t *o = j ? json_loads(j, 0, NULL) : NULL;
    free(j);
    json_t *choice = json_array_get(json_object_get(o, "choices"), 0);
    *finish = json_string_value(json_object_get(choice, "finish_reason"));
    json_t *m = json_incref(json_object_get(choice, "message"));
    static char fin[32];
    snprintf(fin, sizeof fin, "%s", *finish ? *finish : "");
    *finish = fin;
    json_decref(o);
    return m;
}

static void test_final(void) {
    const char *finish;
    json_t *m = message_of("<think>why</think>\n\n<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>",
                           &finish);
    CHECK(json_is_null(json_object_get(m, "content")));
    CHECK_STREQ(json_string_value(json_object_get(m, "reasoning_content")), "why");
    CHECK_STREQ(finish, "tool_calls");
    json_t *c = json_array_get(json_object_get(m, "tool_calls"), 0);
    CHECK_STREQ(json_string_value(json_object_get(c, "type")), "function");
    CHECK(json_object_get(c, "index") == NULL); /* only stream deltas carry an index */
    CHECK(strncmp(json_string_value(json_object_get(c, "id")), "call_", 5) == 0);
    json_t *fn = json_object_get(c, "function");
    CHECK_STREQ(json_string_value(json_object_get(fn, "name")), "f");
    CHECK_STREQ(json_string_value(json_object_get(fn, "arguments")), "{\"a\": 1}");
    json_decref(m);

    m = message_of("Just an answer.", &finish);
    CHECK_STREQ(json_string_value(json_object_get(m, "content")), "Just an answer.");
    CHECK(json_object_get(m, "reasoning_content") == NULL);
    CHECK(json_object_get(m, "tool_calls") == NULL);
    CHECK_STREQ(finish, "stop");
    json_decref(m);
}

static void test_chunks(void) {
    reply_stream s;
    reply_stream_init(&s, &RP.reply);
    reply_delta d;
    static const char *const pieces[] = {"<think>a", "b</think>Hi", " <tool_", "call>{\"name\": \"g\", \"arguments\": {}}",
                                         "</tool_call>"};
    json_t *all = json_array();
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(pieces); i++) {
        CHECK_EQ(reply_stream_feed(&s, pieces[i], strlen(pieces[i]), i + 1 == SOV_ARRAY_LEN_T(pieces), &d), SOV_OK);
        char *j = oai_reply_chunk_json(&RP, &d, NULL, 0);
        if (j) json_array_append_new(all, json_loads(j, 0, NULL));
        free(j);
    }
    char reasoning[64] = "", content[64] = "";
    int calls = 0;
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *ch = json_array_get(json_object_get(json_array_get(all, i), "choices"), 0);
        CHECK_STREQ(json_string_value(json_object_get(json_array_get(all, i), "object")), "chat.completion.chunk");
        CHECK(json_is_null(json_object_get(ch, "finish_reason")));
        json_t *delta = json_object_get(ch, "delta");
        const char *r = json_string_value(json_object_get(delta, "reasoning_content"));
        const char *c = json_string_value(json_object_get(delta, "content"));
        if (r) strncat(reasoning, r, sizeof reasoning - strlen(reasoning) - 1);
        if (c) strncat(content, c, sizeof content - strlen(content) - 1);
        json_t *tc = json_object_get(delta, "tool_calls");
        for (size_t k = 0; k < json_array_size(tc); k++) {
            json_t *call = json_array_get(tc, k);
            CHECK_EQ(json_integer_value(json_object_get(call, "index")), calls);
            CHECK_STREQ(json_string_value(json_object_get(json_object_get(call, "function"), "name")), "g");
            CHECK_STREQ(json_string_value(json_object_get(json_object_get(call, "function"), "arguments")), "{}");
            calls++;
        }
    }
    CHECK_STREQ(reasoning, "ab");
    CHECK_STREQ(content, "Hi");
    CHECK_EQ(calls, 1);
    CHECK_STREQ(oai_reply_finish("stop", s.calls_sent), "tool_calls");
    CHECK_STREQ(oai_reply_finish("length", s.calls_sent), "length");
    CHECK(oai_reply_finish(NULL, 1) == NULL);
    json_decref(all);
    reply_stream_free(&s);
}

int main(void) {
    RUN(test_final);
    RUN(test_chunks);
    TEST_EXIT();
}
