# Installation: `cmake --install build --prefix P` gives
#   P/bin/asam                  the program (libasam linked in statically)
#   P/lib/libasam.so.0.x, libasam.a, lib/pkgconfig/asam.pc, lib/cmake/asam/ (asam::asam)
#   P/include/asam/*.h
#   P/share/asam/               data: clip/ (BPE vocabulary), models/ (tiny fixture models,
#                               world/: the trained miniature models of `asam demo`)
# The program and the library find share/asam relative to their own location
# (src/io/data_dir.c), so the prefix can be moved. Components: "runtime" (program, libasam.so.0,
# data; what the Python wheel holds) and "dev" (headers, libasam.a, pkg-config, CMake files). The build tree gets the same data folder
# (build/share/asam, links to the source files) so a freshly built asam runs in place.

option(ASAM_INSTALL_STATIC "Install the static library libasam.a" ON)

# Data files: destination (relative to share/asam) -> source.
set(ASAM_DATA_FILES
  "clip/vocab.json=data/clip/vocab.json"
  "clip/merges.txt=data/clip/merges.txt"
  "models/sam_tiny/model.pth.gz=tests/data/sam_tiny/model.pth.gz"
  "models/sd_tiny/model.ckpt.gz=tests/data/sd_tiny/model.ckpt.gz"
  "models/sd_tiny/control.pth.gz=tests/data/sd_tiny/control.pth.gz")
foreach(entry ${ASAM_DATA_FILES})
  string(REPLACE "=" ";" pair "${entry}")
  list(GET pair 0 dst)
  list(GET pair 1 src)
  get_filename_component(dst_dir "${dst}" DIRECTORY)
  file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/share/asam/${dst_dir}")
  file(CREATE_LINK "${CMAKE_SOURCE_DIR}/${src}" "${CMAKE_BINARY_DIR}/share/asam/${dst}"
    SYMBOLIC)
  install(FILES "${src}" DESTINATION "${CMAKE_INSTALL_DATADIR}/asam/${dst_dir}"
    COMPONENT runtime)
endforeach()

# The miniature world's trained models (data/world: SAM-mini, SD-mini, the mask ControlNet,
# the last experiment's results), the default of `asam demo`: one folder, linked as a whole.
file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/share/asam/models")
if(NOT EXISTS "${CMAKE_BINARY_DIR}/share/asam/models/world")
  file(CREATE_LINK "${CMAKE_SOURCE_DIR}/data/world" "${CMAKE_BINARY_DIR}/share/asam/models/world"
    SYMBOLIC)
endif()
install(DIRECTORY data/world/ DESTINATION "${CMAKE_INSTALL_DATADIR}/asam/models/world"
  COMPONENT runtime)

# Program and libraries. The program links libasam statically, so it needs no rpath.
install(TARGETS asam_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
set(ASAM_INSTALL_TARGETS asam_shared)
if(ASAM_INSTALL_STATIC)
  list(APPEND ASAM_INSTALL_TARGETS asam)
endif()
install(TARGETS ${ASAM_INSTALL_TARGETS} EXPORT asamTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/asam DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
  FILES_MATCHING PATTERN "*.h")

# CMake package: find_package(asam) -> asam::asam (shared), asam::asam_static.
include(CMakePackageConfigHelpers)
set(ASAM_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/asam)
install(EXPORT asamTargets NAMESPACE asam:: DESTINATION ${ASAM_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(cmake/asamConfig.cmake.in
  "${CMAKE_BINARY_DIR}/asamConfig.cmake" INSTALL_DESTINATION ${ASAM_CMAKE_DIR})
write_basic_package_version_file("${CMAKE_BINARY_DIR}/asamConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion)
install(FILES "${CMAKE_BINARY_DIR}/asamConfig.cmake" "${CMAKE_BINARY_DIR}/asamConfigVersion.cmake"
  DESTINATION ${ASAM_CMAKE_DIR} COMPONENT dev)

# pkg-config: prefix from the .pc file's own location, so a moved prefix still resolves.
file(RELATIVE_PATH ASAM_PC_TO_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig"
  "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" ASAM_PC_TO_PREFIX "${ASAM_PC_TO_PREFIX}")
configure_file(cmake/asam.pc.in "${CMAKE_BINARY_DIR}/asam.pc" @ONLY)
install(FILES "${CMAKE_BINARY_DIR}/asam.pc" DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
  COMPONENT dev)
