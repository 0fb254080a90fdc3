/* status.c - names of sov_status codes and the per-thread detail of the last failure.
 *
 * Every module reports a failure with sov_fail(status, fmt, ...): it formats one line
 * into this thread's buffer and returns the status, so a caller writes
 *     return sov_fail(SOV_ERR_FORMAT, "gguf: bad magic at offset 0");
 * The buffer is thread-local so concurrent contexts never see each other's messages. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

const char *sov_strerror(sov_status status) {
    switch (status) {
#define SOV_STATUS_TEXT_(name, text) \
    case SOV_##name:                 \
        return text;
        SOV_STATUS_MAP(SOV_STATUS_TEXT_)
#undef SOV_STATUS_TEXT_
    default:
        return "unknown status";
    }
}

const char *sov_last_error(void) { return last_error; }

sov_status sov_fail(sov_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void sov_clear_error(void) { last_error[0] = '\0'; }
