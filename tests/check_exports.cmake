# Fails when a shared library exports more than varve's public API.
#
#   cmake -DLIBRARY=libvarve.so -DHEADERS=include/varve [-DNM=nm]
#         [-DALLOW=regex] [-DREQUIRE=text|text|...] -P check_exports.cmake
#
# Reads `nm -D --defined-only -C LIBRARY` and checks every varve name that an
# exported symbol mentions, including in template arguments and parameter types:
#   - nothing in varve::detail (except symbols matching the ALLOW regex: a
#     detail function that a template in a public header calls),
#   - nothing named ...::impl (a pimpl's insides),
#   - every other component of a varve:: name, and every C symbol varve_*, is
#     an identifier of the public headers in HEADERS (comments stripped), so an
#     engine/, index/ or base/ class or function cannot slip through,
#   - no xxHash or liburing function (they would be re-exported dependencies).
# Symbols outside varve (std:: template instantiations over standard types,
# which libstdc++ declares visible) are the toolchain's business and pass.
# REQUIRE lists texts that must each appear in some exported symbol: the check
# also fails on a library that exports too little.
cmake_minimum_required(VERSION 3.25)

if(NOT LIBRARY OR NOT HEADERS)
  message(FATAL_ERROR "usage: cmake -DLIBRARY=... -DHEADERS=... -P check_exports.cmake")
endif()
if(NOT NM)
  set(NM nm)
endif()
# REQUIRE is '|'-separated: a ';' list would not survive add_test's COMMAND.
string(REPLACE "|" ";" REQUIRE "${REQUIRE}")

execute_process(COMMAND ${NM} -D --defined-only -C ${LIBRARY}
                OUTPUT_VARIABLE nm_out ERROR_VARIABLE nm_err RESULT_VARIABLE nm_rc)
if(NOT nm_rc EQUAL 0)
  message(FATAL_ERROR "${NM} -D --defined-only -C ${LIBRARY} failed (${nm_rc}): ${nm_err}")
endif()

# The identifiers the public headers declare or mention, comments removed.
file(GLOB headers ${HEADERS}/*.h)
if(NOT headers)
  message(FATAL_ERROR "no headers in ${HEADERS}")
endif()
set(public_ids "")
foreach(h IN LISTS headers)
  file(READ ${h} text)
  string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" " " text "${text}")
  string(REGEX REPLACE "//[^\n]*" " " text "${text}")
  string(REGEX MATCHALL "[A-Za-z_][A-Za-z0-9_]*" ids "${text}")
  list(APPEND public_ids ${ids})
endforeach()
list(REMOVE_DUPLICATES public_ids)

# One symbol per line: "ADDRESS TYPE NAME" (the name may contain spaces).
string(REPLACE ";" "\\;" nm_out "${nm_out}")
string(REPLACE "\n" ";" lines "${nm_out}")
set(symbols "")
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-fA-F]+ [A-Za-z] (.+)$")
    list(APPEND symbols "${CMAKE_MATCH_1}")
  endif()
endforeach()
list(LENGTH symbols n_symbols)
if(n_symbols EQUAL 0)
  message(FATAL_ERROR "${LIBRARY} exports no symbols at all")
endif()

set(violations "")
foreach(sym IN LISTS symbols)
  set(why "")
  if(sym MATCHES "^(XXH|io_uring_)")
    set(why "a dependency's function")
  endif()
  if(sym MATCHES "^varve_[A-Za-z0-9_]*$")
    list(FIND public_ids "${sym}" at)
    if(at EQUAL -1)
      set(why "a C symbol not declared in the public headers")
    endif()
  endif()
  string(REGEX MATCHALL "varve::[A-Za-z0-9_:]+" paths "${sym}")
  foreach(path IN LISTS paths)
    if(why)
      break()
    endif()
    if(path MATCHES "^varve::detail::")
      if(NOT ALLOW OR NOT sym MATCHES "${ALLOW}")
        set(why "in varve::detail")
      endif()
      continue()
    endif()
    if(path MATCHES "::impl(::|$)")
      set(why "a pimpl's insides")
      break()
    endif()
    string(REGEX REPLACE "::+$" "" path "${path}")
    string(REPLACE "::" ";" parts "${path}")
    list(REMOVE_AT parts 0)  # "varve"
    foreach(part IN LISTS parts)
      list(FIND public_ids "${part}" at)
      if(at EQUAL -1)
        set(why "'${part}' is not a name of the public headers")
        break()
      endif()
    endforeach()
  endforeach()
  if(why)
    list(APPEND violations "  ${sym}\n      (${why})")
  endif()
endforeach()

set(missing "")
foreach(want IN LISTS REQUIRE)
  set(found FALSE)
  foreach(sym IN LISTS symbols)
    string(FIND "${sym}" "${want}" at)
    if(NOT at EQUAL -1)
      set(found TRUE)
      break()
    endif()
  endforeach()
  if(NOT found)
    list(APPEND missing "  ${want}")
  endif()
endforeach()

list(LENGTH violations n_bad)
list(LENGTH missing n_missing)
if(n_bad OR n_missing)
  string(REPLACE ";" "\n" violations "${violations}")
  string(REPLACE ";" "\n" missing "${missing}")
  message(FATAL_ERROR "${LIBRARY}: ${n_bad} symbol(s) exported that are not public API:\n"
                      "${violations}\n${n_missing} required symbol(s) not exported:\n${missing}")
endif()
message(STATUS "${LIBRARY}: ${n_symbols} exported symbols, all public API")
