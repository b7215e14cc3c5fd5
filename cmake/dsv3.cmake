# Helpers: one library per module, tests registered with a CTest label (cpu | gpu | mpi).

# Host floating point exactly as written: no FMA contraction (g++ contracts a*b+c under its default
# -ffp-contract=fast whenever the target has FMA, e.g. with -march=native). backend/ref_math.h, the arithmetic the
# CPU reference shares with the CUDA reference numerics, depends on it (docs/numerics.md).
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off> $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-ffp-contract=off>)
set(DSV3_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
if(DSV3_WERROR)
  list(APPEND DSV3_WARNINGS -Werror)
endif()

# dsv3_add_library(name SOURCES ... [DEPS ...] [PUBLIC_DEPS ...])
function(dsv3_add_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;PUBLIC_DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${DSV3_WARNINGS}>)
  if(A_DEPS)
    target_link_libraries(${name} PRIVATE ${A_DEPS})
  endif()
  if(A_PUBLIC_DEPS)
    target_link_libraries(${name} PUBLIC ${A_PUBLIC_DEPS})
  endif()
endfunction()

# dsv3_add_test(name SOURCES ... DEPS ... LABEL cpu|gpu|mpi [ARGS ...])
function(dsv3_add_test name)
  cmake_parse_arguments(A "" "LABEL" "SOURCES;DEPS;ARGS" ${ARGN})
  if(NOT TARGET GTest::gtest)
    return()  # no GoogleTest on this machine (see the top-level CMakeLists.txt)
  endif()
  add_executable(${name} ${A_SOURCES})
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${DSV3_WARNINGS}>)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${A_DEPS} GTest::gtest GTest::gtest_main Threads::Threads)
  target_compile_definitions(${name} PRIVATE DSV3_TEST_DATA="${PROJECT_SOURCE_DIR}/tests/data"
                             DSV3_SOURCE_DIR="${PROJECT_SOURCE_DIR}" DSV3_BINARY_DIR="${PROJECT_BINARY_DIR}")
  add_test(NAME ${name} COMMAND ${name} ${A_ARGS})
  set_tests_properties(${name} PROPERTIES LABELS ${A_LABEL} ENVIRONMENT "DSV3_BIN=$<TARGET_FILE:dsv3>")
endfunction()
