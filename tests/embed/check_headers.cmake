# check_headers.cmake -- each public header compiles on its own.
#
# cmake -DCC=cc -DCXX=c++ -DSRC=srcdir -DOUT=dir -DLUA_INC=dirs
#       -DLIB=libmoonsock.so -DFLAGS="sanitizer flags" -P this
# A host includes msk.h or msk_host.h first, with nothing before it: each
# must bring what it uses and compile as strict C99 without warnings. As
# C++ each must compile and link against LIB (extern "C" linkage). CXX
# may be empty: C++ is skipped.
set(incs -I${SRC}/core/include -I${SRC}/bindings)
foreach(d ${LUA_INC})
  list(APPEND incs -I${d})
endforeach()
foreach(h msk.h msk_host.h)
  file(WRITE ${OUT}/check_${h}.c
       "#include \"${h}\"\n"
       "int main(void) { return MSK_VERSION_NUM > 0 ? 0 : 1; }\n")
  execute_process(
    COMMAND ${CC} -std=c99 -pedantic -Wall -Wextra -Wstrict-prototypes
            -Werror -fsyntax-only ${incs} ${OUT}/check_${h}.c
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${h} does not compile alone as C99")
  endif()
  if(CXX)
    file(WRITE ${OUT}/check_${h}.cpp
         "#include \"${h}\"\n"
         "int main() { return msk_version() != 0 && "
         "msk_strerror(-1) != 0 ? 0 : 1; }\n")
    separate_arguments(flags UNIX_COMMAND "${FLAGS}")
    execute_process(
      COMMAND ${CXX} -std=c++11 -Wall -Wextra -Werror ${flags} ${incs}
              ${OUT}/check_${h}.cpp ${LIB} -o ${OUT}/check_${h}_cpp
      RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${h} does not compile alone as C++")
    endif()
  endif()
  message(STATUS "${h}: self-contained")
endforeach()
