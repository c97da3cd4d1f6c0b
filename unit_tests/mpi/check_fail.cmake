# Runs fail_rank on NP ranks: expects a non-zero exit and the failing rank's
# message (ctest's TIMEOUT catches a hang).
separate_arguments(flags UNIX_COMMAND "${MPIFLAGS}")
execute_process(COMMAND ${MPIEXEC} ${flags} -np ${NP} ${EXE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "fail_rank exited 0 on ${NP} ranks:\n${out}\n${err}")
endif()
math(EXPR last "${NP} - 1")
if(NOT "${out}${err}" MATCHES "error on rank ${last} of ${NP}: fail_rank: deliberate failure")
  message(FATAL_ERROR "no message naming the failed rank:\n${out}\n${err}")
endif()
message(STATUS "fail_rank: exit ${rc} with the failing rank's message")
