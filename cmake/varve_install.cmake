# Install rules, the CMake package, the pkg-config file and the Debian packages.
# Included by the top-level CMakeLists.txt when VARVE_INSTALL is on (the
# default when varve is the top-level project).
#
# Three install components, which are also the three Debian packages:
#   lib    libvarve.so.0, libvarve.so.0.1.0                      -> libvarve0
#   dev    headers, libvarve.a, libvarve.so, the CMake package,
#          varve.pc                                              -> libvarve-dev
#   tools  the varve CLI                                         -> varve-tools
include(CMakePackageConfigHelpers)

set(VARVE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/varve)

install(TARGETS varve EXPORT varveStaticTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(EXPORT varveStaticTargets NAMESPACE varve:: DESTINATION ${VARVE_CMAKE_DIR} COMPONENT dev)
if(TARGET varve_shared)
  install(TARGETS varve_shared EXPORT varveSharedTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT lib NAMELINK_COMPONENT dev)
  install(EXPORT varveSharedTargets NAMESPACE varve:: DESTINATION ${VARVE_CMAKE_DIR} COMPONENT dev)
endif()
install(DIRECTORY include/varve DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
if(TARGET varve_cli)
  install(TARGETS varve_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
endif()

# find_package(varve 0.1): during 0.x a minor release may change the API
# (semantic versioning's rule for 0.y.z), so a request for 0.1 accepts any
# 0.1.z and nothing else. From 1.0 on this becomes SameMajorVersion.
configure_package_config_file(cmake/varveConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/varveConfig.cmake
  INSTALL_DESTINATION ${VARVE_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/varveConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/varveConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/varveConfigVersion.cmake
        DESTINATION ${VARVE_CMAKE_DIR} COMPONENT dev)

# varve.pc finds its prefix relative to itself (${pcfiledir}), so the same file
# is right after `cmake --install --prefix ANY`, in a .deb, and in a tree
# unpacked with dpkg -x.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  message(FATAL_ERROR "varve.pc needs CMAKE_INSTALL_LIBDIR and CMAKE_INSTALL_INCLUDEDIR "
                      "relative to the prefix (got ${CMAKE_INSTALL_LIBDIR}, ${CMAKE_INSTALL_INCLUDEDIR})")
endif()
file(RELATIVE_PATH VARVE_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" VARVE_PC_TO_PREFIX "${VARVE_PC_TO_PREFIX}")
configure_file(cmake/varve.pc.in ${CMAKE_CURRENT_BINARY_DIR}/varve.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/varve.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# --- cpack -G DEB: libvarve0, libvarve-dev, varve-tools ---
# Only for varve's own build: CPack writes CPackConfig.cmake into the top build
# directory, which in a parent project is the parent's.
if(NOT PROJECT_IS_TOP_LEVEL)
  return()
endif()
# Configure with -DCMAKE_INSTALL_PREFIX=/usr to get Debian's multiarch library
# directory (GNUInstallDirs picks lib/<triplet> only for that prefix).
set(VARVE_PACKAGE_MAINTAINER "varve developers <varve@invalid>" CACHE STRING
    "Maintainer field of the Debian packages")
set(CPACK_PACKAGE_NAME varve)
set(CPACK_PACKAGE_VENDOR varve)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_CONTACT "${VARVE_PACKAGE_MAINTAINER}")
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL dev)
if(TARGET varve_shared)
  list(PREPEND CPACK_COMPONENTS_ALL lib)
endif()
if(TARGET varve_cli)
  list(APPEND CPACK_COMPONENTS_ALL tools)
endif()
# Stripped like dh_strip would (the debug info stays in the build tree).
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(VARVE_DEB_VERSION "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libvarve${VARVE_SOVERSION})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_COMPONENT_LIB_DESCRIPTION
    "varve event log engine - shared library\n"
    "An embeddable, memory-mapped, checksummed event log for event sourcing\n"
    "(C++20 and C APIs). This package holds the shared library.")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libvarve-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "varve event log engine - development files\n"
    "Headers, the static library, the CMake package (find_package(varve)) and\n"
    "varve.pc for pkg-config.")
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME varve-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_TOOLS_DESCRIPTION
    "varve event log engine - command-line tool\n"
    "varve: create, append, read, tail, verify, stat, replay and ship (to Kafka)\n"
    "varve event logs.")

# The shared library's and the CLI's run-time dependencies (libc6, libstdc++6,
# libxxhash0, liburing2, librdkafka1, ...) come from dpkg-shlibdeps, as in a
# debian/rules build; libvarve0 declares its own shlibs for packages built on it.
find_program(VARVE_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(VARVE_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
  set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
endif()
# libvarve-dev: the exact library it was built with, and the -dev packages that
# linking libvarve.a needs (varveConfig.cmake and varve.pc's Requires.private
# name libxxhash, liburing, libzstd and libsodium).
set(VARVE_DEV_DEPENDS "libxxhash-dev, liburing-dev, libzstd-dev, libsodium-dev")
if(TARGET varve_shared)
  set(VARVE_DEV_DEPENDS "${CPACK_DEBIAN_LIB_PACKAGE_NAME} (= ${VARVE_DEB_VERSION}), ${VARVE_DEV_DEPENDS}")
endif()
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${VARVE_DEV_DEPENDS}")

include(CPack)
