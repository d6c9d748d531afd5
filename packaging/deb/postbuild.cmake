# CPACK_POST_BUILD_SCRIPTS of cmake/packaging.cmake: two fixes to the control
# part that CPack's DEB generator (CMake 3.25) cannot be told to make:
#   - the Multi-Arch field: CPACK_COH_DEB_MULTIARCH_<package>, where set;
#   - postinst/postrm that only run ldconfig go where DEBIAN/triggers
#     activates ldconfig already (lintian: maintscript-calls-ldconfig).
# The package is unpacked with dpkg-deb, its DEBIAN/ edited, and the package
# built again from the same tree (same files, modes and md5sums).
find_program(COH_DPKG_DEB dpkg-deb)
foreach(deb IN LISTS CPACK_PACKAGE_FILES)
  get_filename_component(name ${deb} NAME)
  string(REGEX REPLACE "_.*" "" pkg "${name}")
  set(value "${CPACK_COH_DEB_MULTIARCH_${pkg}}")
  if(NOT COH_DPKG_DEB)
    message(WARNING "postbuild: no dpkg-deb, ${name} is left as CPack made it")
    continue()
  endif()
  set(tree ${CPACK_TOPLEVEL_DIRECTORY}/control-${pkg})
  file(REMOVE_RECURSE ${tree})
  execute_process(COMMAND ${COH_DPKG_DEB} -R ${deb} ${tree} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "postbuild: dpkg-deb -R ${name} failed")
  endif()
  if(EXISTS ${tree}/DEBIAN/triggers)
    file(STRINGS ${tree}/DEBIAN/triggers triggers)
    if("activate-noawait ldconfig" IN_LIST triggers)
      foreach(script postinst postrm)
        if(EXISTS ${tree}/DEBIAN/${script})
          file(STRINGS ${tree}/DEBIAN/${script} body)
          list(FILTER body EXCLUDE REGEX "^(#!/bin/sh|set -e|if \\[ \"\\$1\" = \"[a-z]+\" \\]; then|[ \t]*ldconfig|fi|[ \t]*)$")
          if(NOT body)
            file(REMOVE ${tree}/DEBIAN/${script})
          endif()
        endif()
      endforeach()
    endif()
  endif()
  file(READ ${tree}/DEBIAN/control control)
  string(STRIP "${control}" control)   # CPack ends it with an empty line
  if(value)
    string(APPEND control "\nMulti-Arch: ${value}")
  endif()
  file(WRITE ${tree}/DEBIAN/control "${control}\n")
  execute_process(COMMAND ${COH_DPKG_DEB} --root-owner-group -b ${tree} ${deb}
    RESULT_VARIABLE rc OUTPUT_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "postbuild: dpkg-deb -b ${name} failed")
  endif()
  file(REMOVE_RECURSE ${tree})
endforeach()
