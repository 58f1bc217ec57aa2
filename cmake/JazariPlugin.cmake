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
    # Installed in <libdir>/jazari/plugins, a plugin finds libjz_kernels two folders up. The
    # build tree's copy carries the same RUNPATH (cmake/JazariInstallDirs.cmake says why): the
    # worker loads plugins through /proc/self/fd, where $ORIGIN leads nowhere anyway, and
    # finds libjz_kernels beside its own folder itself (worker/loader.c), in both trees.
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${JZ_PLUGIN_OUTPUT_DIR}
      INSTALL_RPATH "$ORIGIN/${JZ_REL_PLUGINS_TO_LIB}" BUILD_WITH_INSTALL_RPATH ON)
    install(TARGETS ${target} LIBRARY DESTINATION ${JZ_INSTALL_PLUGINDIR} COMPONENT jazari-runtime)
  endif()
endfunction()
