# jz_add_plugin(NAME SOURCES... [TEST]) builds a workload plugin as a loadable module
# named NAME.so. Plugins see only the public headers (include/jazari).
function(jz_add_plugin name)
  cmake_parse_arguments(P "TEST" "" "" ${ARGN})
  set(target jzplugin_${name})
  add_library(${target} MODULE ${P_UNPARSED_ARGUMENTS})
  set_target_properties(${target} PROPERTIES PREFIX "" OUTPUT_NAME ${name}
    C_VISIBILITY_PRESET hidden)
  target_link_libraries(${target} PRIVATE jz_headers)
  if(P_TEST)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${JZ_TEST_PLUGIN_OUTPUT_DIR})
  else()
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${JZ_PLUGIN_OUTPUT_DIR})
    install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/jazari/plugins)
  endif()
endfunction()
