# Run PROG with ARGS ("|"-separated) and require exit code EXPECT and a message on stderr.
# SPDX-License-Identifier: Apache-2.0
string(REPLACE "|" ";" _args "${ARGS}")
execute_process(COMMAND "${PROG}" ${_args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "command: ${PROG} ${_args}\nexit code: ${rc}\nstdout: ${out}\nstderr: ${err}")
if(NOT rc STREQUAL "${EXPECT}")
  message(FATAL_ERROR "expected exit code ${EXPECT}, got ${rc}")
endif()
if(NOT err MATCHES "error: ")
  message(FATAL_ERROR "expected an error message on stderr")
endif()
