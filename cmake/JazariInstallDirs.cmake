# Where an installed Jazari keeps its parts, as paths relative to each other, so that one build
# works from any prefix (cmake --install --prefix P, a package's /usr, a scratch root): programs
# find the compute library and plugins from their own location, never from a path fixed at build
# time. Everything derives from GNUInstallDirs (lib/x86_64-linux-gnu under /usr on Debian).
include_guard(GLOBAL)

# Plugins live in a folder of their own under the library folder.
set(JZ_INSTALL_PLUGINDIR ${CMAKE_INSTALL_LIBDIR}/jazari/plugins)

# The relative path from one installed folder to another ("../lib/x86_64-linux-gnu").
function(jz_install_relpath out from to)
  foreach(v from to)
    if(IS_ABSOLUTE "${${v}}")
      set(${v}_full "${${v}}")
    else()
      set(${v}_full "${CMAKE_INSTALL_PREFIX}/${${v}}")
    endif()
  endforeach()
  cmake_path(NORMAL_PATH from_full)
  cmake_path(NORMAL_PATH to_full)
  file(RELATIVE_PATH rel "${from_full}" "${to_full}")
  string(REGEX REPLACE "/+$" "" rel "${rel}")
  if(rel STREQUAL "")
    set(rel ".")
  endif()
  set(${out} "${rel}" PARENT_SCOPE)
endfunction()

jz_install_relpath(JZ_REL_BIN_TO_LIB ${CMAKE_INSTALL_BINDIR} ${CMAKE_INSTALL_LIBDIR})
jz_install_relpath(JZ_REL_BIN_TO_PLUGINS ${CMAKE_INSTALL_BINDIR} ${JZ_INSTALL_PLUGINDIR})
jz_install_relpath(JZ_REL_PLUGINS_TO_LIB ${JZ_INSTALL_PLUGINDIR} ${CMAKE_INSTALL_LIBDIR})

# Every install() names its package (cmake/JazariPackaging.cmake); one that does not lands in
# the runtime package rather than in none.
set(CMAKE_INSTALL_DEFAULT_COMPONENT_NAME jazari-runtime)

# Installed programs find libraries beside the prefix they were installed in. Build-tree
# binaries keep their absolute RPATH (CMake swaps it at install time). Plugins override this
# with their own (cmake/JazariPlugin.cmake).
set(CMAKE_INSTALL_RPATH "$ORIGIN/${JZ_REL_BIN_TO_LIB}")
