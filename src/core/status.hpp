// Error reporting shared by every backend: a status plus a thread-local readable message.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdarg>
#include <string>

#include "tfla/tfla.h"

namespace tfla {

// Record `message` (printf-style) as this thread's last error and return `status`.
tfla_status fail(tfla_status status, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void clear_error();

}  // namespace tfla

// Propagate a non-success status.
#define TFLA_TRY(expr)                              \
  do {                                              \
    const tfla_status tfla_try_status_ = (expr);    \
    if (tfla_try_status_ != TFLA_SUCCESS) return tfla_try_status_; \
  } while (0)
