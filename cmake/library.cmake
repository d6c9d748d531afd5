# The library itself, built after the backends have added their sources.
get_property(COH_LINK_LIBS GLOBAL PROPERTY COH_LINK_LIBS)
get_property(COH_PC_LIBS_PRIVATE GLOBAL PROPERTY COH_PC_LIBS_PRIVATE)
get_property(COH_PC_REQUIRES_PRIVATE GLOBAL PROPERTY COH_PC_REQUIRES_PRIVATE)

add_library(coherent SHARED $<TARGET_OBJECTS:coherent_obj>)
target_link_libraries(coherent PRIVATE ${COH_LINK_LIBS} Threads::Threads)
target_include_directories(coherent PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set_target_properties(coherent PROPERTIES
  OUTPUT_NAME coherent
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}
  C_VISIBILITY_PRESET hidden
  LINK_DEPENDS ${PROJECT_SOURCE_DIR}/core/libcoherent.map)
target_link_options(coherent PRIVATE
  -Wl,--version-script=${PROJECT_SOURCE_DIR}/core/libcoherent.map -Wl,--no-undefined)

# Same objects as a static archive, for tests that reach core internals.
add_library(coherent_static STATIC $<TARGET_OBJECTS:coherent_obj>)
target_link_libraries(coherent_static PUBLIC ${COH_LINK_LIBS} Threads::Threads)
target_include_directories(coherent_static PUBLIC
  ${PROJECT_SOURCE_DIR}/include ${PROJECT_BINARY_DIR}/include ${PROJECT_SOURCE_DIR}/core)

# What the programs link: the shared library, or everything static.
add_library(coh_program_lib INTERFACE)
if(COH_STATIC_PROGRAMS)
  if(COH_WITH_LIBPCI)
    message(FATAL_ERROR "COH_STATIC_PROGRAMS needs -DCOH_WITH_LIBPCI=OFF: there is no static libpci")
  endif()
  target_link_libraries(coh_program_lib INTERFACE coherent_static -static)
else()
  target_link_libraries(coh_program_lib INTERFACE coherent)
endif()

# ---- install: library, headers, pkg-config, CMake package ----
# Components, one Debian package each (cmake/packaging.cmake): runtime is the
# .so.1 and its soname link, dev everything a consumer builds with.
install(TARGETS coherent EXPORT libcoherentTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/coherent.h ${PROJECT_BINARY_DIR}/include/coherent_version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)

string(REPLACE ";" " " COH_PC_LIBS_PRIVATE "${COH_PC_LIBS_PRIVATE}")
string(REPLACE ";" " " COH_PC_REQUIRES_PRIVATE "${COH_PC_REQUIRES_PRIVATE}")
# Relocatable: the prefix is found from where the .pc file lies.
file(RELATIVE_PATH COH_PC_UP "${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" COH_PC_UP "${COH_PC_UP}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/libcoherent.pc.in ${PROJECT_BINARY_DIR}/libcoherent.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/libcoherent.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

include(CMakePackageConfigHelpers)
install(EXPORT libcoherentTargets NAMESPACE libcoherent::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/libcoherent COMPONENT dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/libcoherentConfig.cmake.in
  ${PROJECT_BINARY_DIR}/libcoherentConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/libcoherent)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/libcoherentConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/libcoherentConfig.cmake ${PROJECT_BINARY_DIR}/libcoherentConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/libcoherent COMPONENT dev)
