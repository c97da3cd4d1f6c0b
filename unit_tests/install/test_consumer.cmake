# Installs the build tree BUILD_DIR into PREFIX, then configures, builds and
# runs the consumer project SOURCE_DIR against it.
file(REMOVE_RECURSE "${PREFIX}" "${PREFIX}-consumer-build")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${PREFIX}"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "install into ${PREFIX} failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${PREFIX}-consumer-build"
                        -DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer against ${PREFIX} failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${PREFIX}-consumer-build" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed")
endif()
execute_process(COMMAND "${PREFIX}-consumer-build/consumer" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer failed")
endif()
file(REMOVE_RECURSE "${PREFIX}" "${PREFIX}-consumer-build")
