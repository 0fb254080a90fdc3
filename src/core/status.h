/* status.h - internal error reporting: sov_fail() sets the thread's detail message. */
#ifndef SOV_CORE_STATUS_H
#define SOV_CORE_STATUS_H

#include "sov.h"

/* Records a one-line detail message (printf format) and returns status. */
sov_status sov_fail(sov_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sov_clear_error(void);

#endif
