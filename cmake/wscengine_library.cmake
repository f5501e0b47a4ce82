# wscengine_library(<target> EXPORT_NAME <name> SOURCES <files...> [PUBLIC_LINK <libs...>])
# A library of the project: alias wscengine::<name>, headers in ./include, warnings on.
function(wscengine_library target)
  cmake_parse_arguments(ARG "" "EXPORT_NAME" "SOURCES;PUBLIC_LINK" ${ARGN})
  add_library(${target} ${ARG_SOURCES})
  add_library(wscengine::${ARG_EXPORT_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES OUTPUT_NAME ${target} EXPORT_NAME ${ARG_EXPORT_NAME})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_LINK})
  target_compile_options(${target} PRIVATE ${WSCENGINE_WARNINGS})
endfunction()
