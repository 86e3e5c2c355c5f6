# Shared settings, linked PRIVATE into every first-party target:
#   gearrun_options   language level, sanitizers
#   gearrun_warnings  the warning set (and -Werror with GEARRUN_WARNINGS_AS_ERRORS)

add_library(gearrun_options INTERFACE)
target_compile_features(gearrun_options INTERFACE cxx_std_20)

if(GEARRUN_SANITIZERS)
  string(REPLACE ";" "," _gearrun_sanitizers "${GEARRUN_SANITIZERS}")
  target_compile_options(gearrun_options INTERFACE
    -fsanitize=${_gearrun_sanitizers} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(gearrun_options INTERFACE -fsanitize=${_gearrun_sanitizers})
endif()

add_library(gearrun_warnings INTERFACE)
target_compile_options(gearrun_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
  -Wunused -Woverloaded-virtual -Wconversion -Wsign-conversion -Wnull-dereference
  -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough -Wmisleading-indentation
  -Wduplicated-cond -Wduplicated-branches -Wlogical-op
  # Designated initializers that leave members at their defaults are the house style for
  # options structs; GCC 12 would flag every one of them.
  -Wno-missing-field-initializers)
if(GEARRUN_WARNINGS_AS_ERRORS)
  target_compile_options(gearrun_warnings INTERFACE -Werror)
endif()

# gearrun_library(NAME SOURCES...): a first-party static library gearrun::NAME.
function(gearrun_library name)
  add_library(gearrun_${name} STATIC ${ARGN})
  add_library(gearrun::${name} ALIAS gearrun_${name})
  # Includes start at the repository root: #include "jobs/job_spec.h".
  target_include_directories(gearrun_${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(gearrun_${name} PRIVATE gearrun_options gearrun_warnings)
endfunction()

# gearrun_test(NAME SOURCES ... LIBS ... [LABELS ...] [TIMEOUT seconds]): one GoogleTest
# binary whose tests CTest discovers one by one, each with a timeout.
function(gearrun_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gmock_main gearrun_options
                                        gearrun_warnings)
  target_compile_definitions(${name} PRIVATE
    GEARRUN_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  set(properties TIMEOUT ${T_TIMEOUT})
  if(T_LABELS)
    list(APPEND properties LABELS "${T_LABELS}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${properties})
endfunction()
