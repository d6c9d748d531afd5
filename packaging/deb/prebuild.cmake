# CPACK_PRE_BUILD_SCRIPTS of cmake/packaging.cmake: runs inside cpack on the
# staged tree of each component, before the .deb files are made, and does
# what Debian policy asks for that `cmake --install` does not:
#   - /usr/share/doc/<package>/copyright and changelog.Debian.gz;
#   - manual pages compressed (gzip -9n), and each ".so manN/page.N"
#     redirect page replaced by a link to the compressed page;
#   - ELF files stripped as dh_strip does (no .comment, .note; a shared
#     library --strip-unneeded), with CPACK_COH_STRIP;
#   - modes: directories and usr/bin/* 0755, every other file 0644.
# CPACK_COH_DEB_DIR (packaging/deb) and CPACK_COH_DEB_PACKAGES
# ("component=package;...") come from packaging.cmake.
find_program(COH_GZIP gzip REQUIRED)

function(coh_deb_run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "prebuild: '${ARGN}' failed (${rc})")
  endif()
endfunction()

foreach(pair IN LISTS CPACK_COH_DEB_PACKAGES)
  string(REPLACE "=" ";" pair "${pair}")
  list(GET pair 0 comp)
  list(GET pair 1 pkg)
  set(root ${CPACK_TEMPORARY_DIRECTORY}/${comp})
  if(NOT IS_DIRECTORY ${root})
    continue()   # component not built (cohctl off)
  endif()
  set(usr ${root}${CPACK_PACKAGING_INSTALL_PREFIX})

  set(doc ${usr}/share/doc/${pkg})
  file(MAKE_DIRECTORY ${doc})
  file(COPY ${CPACK_COH_DEB_DIR}/copyright DESTINATION ${doc})
  coh_deb_run(${COH_GZIP} -9n -c ${CPACK_COH_DEB_DIR}/changelog OUTPUT_FILE ${doc}/changelog.Debian.gz)

  file(GLOB pages ${usr}/share/man/man*/*)
  foreach(page IN LISTS pages)
    if(IS_SYMLINK ${page} OR page MATCHES "\\.gz$")
      continue()
    endif()
    file(READ ${page} text LIMIT 256)   # a redirect is one short line
    string(REGEX REPLACE "(^|\n)\\.\\\\\"[^\n]*" "" text "${text}")   # roff comments
    string(STRIP "${text}" text)
    if(text MATCHES "^\\.so +(man[0-9a-z]+/)?([^ /\n]+)$")
      get_filename_component(dir ${page} DIRECTORY)
      get_filename_component(section ${dir} NAME)
      set(target ${CMAKE_MATCH_2}.gz)
      if(CMAKE_MATCH_1 AND NOT CMAKE_MATCH_1 STREQUAL "${section}/")
        set(target ../${CMAKE_MATCH_1}${target})
      endif()
      file(REMOVE ${page})
      file(CREATE_LINK ${target} ${page}.gz SYMBOLIC)
    else()
      coh_deb_run(${COH_GZIP} -9nf ${page})
    endif()
  endforeach()

  file(GLOB_RECURSE entries LIST_DIRECTORIES true ${root}/*)
  foreach(e IN LISTS entries)
    string(FIND "${e}" "${usr}/bin/" in_bin)
    if(IS_SYMLINK ${e})
      continue()
    endif()
    if(NOT IS_DIRECTORY ${e})
      file(READ ${e} magic LIMIT 4 HEX)
      if(magic STREQUAL "7f454c46")
        set(how --remove-section=.comment --remove-section=.note)
        if(e MATCHES "\\.so(\\.[0-9]+)*$")
          list(APPEND how --strip-unneeded)
        endif()
        coh_deb_run(${CPACK_COH_STRIP} ${how} ${e})
      endif()
    endif()
    if(IS_DIRECTORY ${e} OR in_bin EQUAL 0)
      file(CHMOD ${e} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
    else()
      file(CHMOD ${e} PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
    endif()
  endforeach()
endforeach()
