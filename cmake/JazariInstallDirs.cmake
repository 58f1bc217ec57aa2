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

# The default RUNPATH of installed targets: the library folder of the prefix they were installed
# in (the CUDA module's). Programs have none and plugins their own (below, and
# cmake/JazariPlugin.cmake).
set(CMAKE_INSTALL_RPATH "$ORIGIN/${JZ_REL_BIN_TO_LIB}")

# Installed targets are built with their install RPATH (BUILD_WITH_INSTALL_RPATH) instead of
# having it written in at install time. CMake's in-place rewrite needs room: it ends the
# build-tree RPATH with an empty entry and pads it with more, and the dynamic loader reads an
# empty entry as the current folder. Build-tree programs then searched whatever folder they ran
# in (the worker: the job's folder) for libc, jansson and hwloc, ten failed opens per library on
# every start. Programs need none (jz_install_program); plugins (cmake/JazariPlugin.cmake) and
# the CUDA module (kernels/CMakeLists.txt) say how they find their libraries in the build tree.

# jz_install_program(TARGET COMPONENT) installs a program in the bin folder. Programs link no
# shared library of this build (plugins find libjz_kernels by their own RUNPATH, and the worker
# loads it for them), so they carry no RUNPATH at all: with one, the loader first searched the
# library folder and its hwcaps subfolders for libc and jansson, twenty failed calls a start.
function(jz_install_program target component)
  set_target_properties(${target} PROPERTIES BUILD_WITH_INSTALL_RPATH ON INSTALL_RPATH ""
    INSTALL_RPATH_USE_LINK_PATH ON)
  install(TARGETS ${target} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT ${component})
endfunction()
