# Debian packages through CPack: `cpack -G DEB` in a build configured with
# -DCMAKE_INSTALL_PREFIX=/usr (scripts/package.sh does that, then lintian).
# One package per install component:
#   runtime -> libcoherent1        the .so.1 and its soname link
#   dev     -> libcoherent-dev     header, .so link, pkg-config, CMake package, man3/man7
#   tools   -> libcoherent-tools   cohctl and its man page
# What CPack does not do the Debian way (copyright, changelog.Debian.gz,
# compressed man pages with links for the .so redirects, modes) is done by
# packaging/deb/prebuild.cmake on the staged tree; the shlibs, symbols and
# triggers control files are written here.
if(CMAKE_VERSION VERSION_LESS 3.19)
  message(STATUS "Debian packages need CMake 3.19 (CPACK_PRE_BUILD_SCRIPTS): cpack is not set up")
  return()
endif()
set(COH_DEB_DIR ${PROJECT_SOURCE_DIR}/packaging/deb)
set(COH_DEB_MAINTAINER "libcoherent maintainers <maintainers@users.noreply.r-seed-80738d3a.example>"
  CACHE STRING "Maintainer field of the Debian packages")

# The Debian revision comes from the top entry of the changelog, which must
# be an entry for this VERSION (test deb_contents checks it).
file(STRINGS ${COH_DEB_DIR}/changelog COH_DEB_TOP LIMIT_COUNT 1)
if(NOT COH_DEB_TOP MATCHES "^libcoherent \\(([^)-]+)-([^)]+)\\)")
  message(FATAL_ERROR "packaging/deb/changelog: cannot read the version of '${COH_DEB_TOP}'")
endif()
set(COH_DEB_CHANGELOG_UPSTREAM ${CMAKE_MATCH_1})
set(COH_DEB_REVISION ${CMAKE_MATCH_2})
set(COH_DEB_VERSION ${PROJECT_VERSION}-${COH_DEB_REVISION})
set(COH_DEB_SOVERSION ${PROJECT_VERSION_MAJOR})
set(COH_DEB_RUNTIME libcoherent${COH_DEB_SOVERSION})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME libcoherent)
set(CPACK_PACKAGE_VENDOR "libcoherent")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev)
if(TARGET cohctl)
  list(APPEND CPACK_COMPONENTS_ALL tools)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${COH_DEB_REVISION})
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${COH_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Multi-Arch (added by postbuild.cmake: CPack before 3.31 has no field for
# it): same for the library packages where the library goes to the multiarch
# directory, which GNUInstallDirs picks for the prefix /usr on Debian.
set(CPACK_COH_DEB_MULTIARCH_libcoherent-tools foreign)
if(CMAKE_LIBRARY_ARCHITECTURE AND CMAKE_INSTALL_LIBDIR MATCHES "/${CMAKE_LIBRARY_ARCHITECTURE}$")
  set(CPACK_COH_DEB_MULTIARCH_${COH_DEB_RUNTIME} same)
  set(CPACK_COH_DEB_MULTIARCH_libcoherent-dev same)
endif()

set(COH_DEB_ABOUT
"libcoherent gives a runtime one C API to allocate memory on a target (a
NUMA node, a CPU-less CXL or HBM node, device memory), migrate ranges
between targets, ask where every page of a range lives without moving it,
ask what a pin would do before pinning, set per allocation what a child
sees after fork(), and pool small blocks on any target. Backends: host
NUMA memory, the Linux test_hmm driver, CXL memory and device-dax, NVIDIA
GPUs through CUDA managed memory (the driver is opened at run time) and
AMD GPUs through amdkfd SVM.
")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${COH_DEB_RUNTIME})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "vendor-neutral API for coherent device memory
${COH_DEB_ABOUT}
This package contains the shared library.")

# libcoherent.pc names its Requires.private modules, which pkg-config
# resolves even for a shared link: their -dev packages come along.
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libcoherent-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${COH_DEB_RUNTIME} (= ${COH_DEB_VERSION})")
set(COH_DEB_DEV_OF_libpci libpci-dev)
set(COH_DEB_DEV_OF_libdrm libdrm-dev)
get_property(COH_DEB_PC_REQUIRES GLOBAL PROPERTY COH_PC_REQUIRES_PRIVATE)
foreach(module IN LISTS COH_DEB_PC_REQUIRES)
  if(NOT COH_DEB_DEV_OF_${module})
    message(FATAL_ERROR "packaging.cmake: libcoherent.pc requires ${module}: set COH_DEB_DEV_OF_${module} to its Debian -dev package")
  endif()
  string(APPEND CPACK_DEBIAN_DEV_PACKAGE_DEPENDS ", ${COH_DEB_DEV_OF_${module}}")
endforeach()
set(CPACK_DEBIAN_DEV_DESCRIPTION "vendor-neutral API for coherent device memory - development files
${COH_DEB_ABOUT}
This package contains the header coherent.h, the pkg-config file, the
CMake package (find_package(libcoherent)) and the manual pages of the API.")

# dpkg-shlibdeps names libc, libnuma, zlib... for cohctl. It finds
# libcoherent.so.1 in the runtime component's staging folder beside the one
# it runs in (CPack ignores the missing dependency information of a library
# that no installed package owns), so that dependency is written here.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ../runtime/usr/${CMAKE_INSTALL_LIBDIR})
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME libcoherent-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "${COH_DEB_RUNTIME} (= ${COH_DEB_VERSION})")
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "vendor-neutral API for coherent device memory - cohctl tool
${COH_DEB_ABOUT}
This package contains cohctl, which lists the memory targets of the
machine with their capabilities, says what the kernel or driver lacks for
each backend, shows where the pages of another process's range live, and
runs the benchmark suites.")

# Control files of the runtime package: shlibs (the whole ABI needs this
# version), symbols (each name at the version of its node in the version
# script: LIBCOHERENT_1.1 -> 1.1.0) and the ldconfig trigger.
set(COH_DEB_CONTROL ${PROJECT_BINARY_DIR}/packaging/deb)
file(MAKE_DIRECTORY ${COH_DEB_CONTROL})
file(WRITE ${COH_DEB_CONTROL}/shlibs
  "libcoherent ${COH_DEB_SOVERSION} ${COH_DEB_RUNTIME} (>= ${PROJECT_VERSION})\n")
file(WRITE ${COH_DEB_CONTROL}/triggers "activate-noawait ldconfig\n")
file(STRINGS ${PROJECT_SOURCE_DIR}/core/libcoherent.map COH_DEB_MAP)
set(COH_DEB_SYMBOLS "libcoherent.so.${COH_DEB_SOVERSION} ${COH_DEB_RUNTIME} #MINVER#\n")
string(APPEND COH_DEB_SYMBOLS "* Build-Depends-Package: libcoherent-dev\n")
set(COH_DEB_NODE "")
foreach(line IN LISTS COH_DEB_MAP)
  if(line MATCHES "^(LIBCOHERENT_([0-9]+)\\.([0-9]+))[ \t]*{")
    set(COH_DEB_NODE ${CMAKE_MATCH_1})
    set(COH_DEB_SINCE ${CMAKE_MATCH_2}.${CMAKE_MATCH_3}.0)
    string(APPEND COH_DEB_SYMBOLS " ${COH_DEB_NODE}@${COH_DEB_NODE} ${COH_DEB_SINCE}\n")
  elseif(COH_DEB_NODE AND line MATCHES "^[ \t]*(coh_[A-Za-z0-9_]+);")
    string(APPEND COH_DEB_SYMBOLS " ${CMAKE_MATCH_1}@${COH_DEB_NODE} ${COH_DEB_SINCE}\n")
  endif()
endforeach()
file(WRITE ${COH_DEB_CONTROL}/symbols "${COH_DEB_SYMBOLS}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/core/libcoherent.map ${COH_DEB_DIR}/changelog)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
  "${COH_DEB_CONTROL}/shlibs;${COH_DEB_CONTROL}/symbols;${COH_DEB_CONTROL}/triggers")

# Read by prebuild.cmake (CPack hands it every CPACK_ variable).
set(CPACK_COH_DEB_DIR ${COH_DEB_DIR})
set(CPACK_COH_STRIP ${CMAKE_STRIP})
set(CPACK_COH_DEB_PACKAGES "runtime=${COH_DEB_RUNTIME};dev=libcoherent-dev;tools=libcoherent-tools")
set(CPACK_PRE_BUILD_SCRIPTS ${COH_DEB_DIR}/prebuild.cmake)
set(CPACK_POST_BUILD_SCRIPTS ${COH_DEB_DIR}/postbuild.cmake)

include(CPack)
