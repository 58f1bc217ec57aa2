# Installed extras and Debian packages (docs/install.md): systemd units, the default
# configuration, man pages, bash completion, the -dev package's CMake and pkg-config files, and
# CPack's DEB generator with one component per package:
#   jazari-runtime  jazari-worker, the workload plugins, libjz_kernels (what every machine that
#                   runs jobs needs)
#   jazari-node     the node agent (also jazarid's local agent), its unit and man page
#   jazari-server   jazarid, its unit, /etc/jazari/jazarid.json, its man page
#   jazari-client   the jazari CLI, jazari-sim, man page, bash completion
#   jazari-dev      headers, libjz_kernels.so, jazari-plugin.pc, the CMake package Jazari
#   jazari-cuda     libjz_kernels_cuda.so (only when CUDA is built)
# Descriptions: the first line is the package's synopsis, the rest its long description.
# Build them with `cpack -G DEB` in a build folder (packages put everything under /usr and the
# configuration under /etc, whatever CMAKE_INSTALL_PREFIX the build was configured with).
include_guard(GLOBAL)
include(CMakePackageConfigHelpers)

set(JZ_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
set(JZ_GEN_DIR ${PROJECT_BINARY_DIR}/packaging)

# ---- Files whose content names installed paths ----
# Units name jazarid's path and its configuration file. Both depend on the prefix of the
# install actually run (cmake --install --prefix P, or /usr for a package), so they are written
# at install time: under /usr the configuration is /etc (as GNUInstallDirs does), elsewhere
# PREFIX/etc. The code runs in the install script, where CMAKE_INSTALL_PREFIX is that prefix.
set(jz_install_dirs_code "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(JZ_SYSCONFDIR /etc)
  else()
    set(JZ_SYSCONFDIR \"\${CMAKE_INSTALL_PREFIX}/etc\")
  endif()
  set(JZ_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  set(JZ_UNITDIR \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
")

# jz_install_configured(TEMPLATE DESTVAR NAME COMPONENT) configures TEMPLATE (@VAR@ from
# the variables above) at install time and installs it as DESTVAR/NAME.
function(jz_install_configured template destvar name component)
  set(out ${JZ_GEN_DIR}/${component}/${name})
  install(CODE "${jz_install_dirs_code}
    configure_file(\"${template}\" \"${out}\" @ONLY)
    file(INSTALL DESTINATION \"\${${destvar}}\" TYPE FILE FILES \"${out}\")"
    COMPONENT ${component})
endfunction()

jz_install_configured(${JZ_PACKAGING_DIR}/systemd/jazarid.service.in JZ_UNITDIR jazarid.service
                      jazari-server)
jz_install_configured(${JZ_PACKAGING_DIR}/systemd/jazari-node.service.in JZ_UNITDIR
                      jazari-node.service jazari-node)
# The default configuration: a conffile of the server package (dpkg keeps local changes). A
# source install keeps an existing file too, and puts the new default beside it.
install(CODE "${jz_install_dirs_code}
  set(jz_conf \"\$ENV{DESTDIR}\${JZ_SYSCONFDIR}/jazari/jazarid.json\")
  if(EXISTS \"\${jz_conf}\")
    message(STATUS \"Keeping \${jz_conf}; the default is jazarid.json.default beside it\")
    configure_file(\"${JZ_PACKAGING_DIR}/jazarid.json\" \"\${jz_conf}.default\" COPYONLY)
  else()
    file(INSTALL DESTINATION \"\${JZ_SYSCONFDIR}/jazari\" TYPE FILE
         FILES \"${JZ_PACKAGING_DIR}/jazarid.json\")
  endif()" COMPONENT jazari-server)

# ---- Man pages and completion ----
install(FILES ${JZ_PACKAGING_DIR}/man/jazari.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
        COMPONENT jazari-client)
install(FILES ${JZ_PACKAGING_DIR}/man/jazarid.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8
        COMPONENT jazari-server)
install(FILES ${JZ_PACKAGING_DIR}/man/jazari-node.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8
        COMPONENT jazari-node)
install(FILES ${JZ_PACKAGING_DIR}/completion/jazari.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME jazari
        COMPONENT jazari-client)
# zsh looks in vendor-completions on Debian (site-functions holds the admin's own).
install(FILES ${JZ_PACKAGING_DIR}/completion/_jazari
        DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions COMPONENT jazari-client)

# ---- For plugin authors: pkg-config and CMake package (relocatable: paths relative to the
# files themselves) ----
jz_install_relpath(JZ_REL_PC_TO_PREFIX ${CMAKE_INSTALL_LIBDIR}/pkgconfig ".")
set(JZ_PC_LIBDIR ${CMAKE_INSTALL_LIBDIR})
set(JZ_PC_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR})
set(JZ_PC_PLUGINDIR ${JZ_INSTALL_PLUGINDIR})
foreach(pc jazari-plugin jazari-kernels)
  configure_file(${JZ_PACKAGING_DIR}/pkgconfig/${pc}.pc.in ${JZ_GEN_DIR}/${pc}.pc @ONLY)
  install(FILES ${JZ_GEN_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
          COMPONENT jazari-dev)
endforeach()

set(JZ_CMAKE_PKGDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Jazari)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/JazariConfig.cmake.in
  ${JZ_GEN_DIR}/JazariConfig.cmake INSTALL_DESTINATION ${JZ_CMAKE_PKGDIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR JZ_INSTALL_PLUGINDIR)
# 0.x: a minor release may change the plugin ABI, so only the same major.minor is compatible.
write_basic_package_version_file(${JZ_GEN_DIR}/JazariConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${JZ_GEN_DIR}/JazariConfig.cmake ${JZ_GEN_DIR}/JazariConfigVersion.cmake
        DESTINATION ${JZ_CMAKE_PKGDIR} COMPONENT jazari-dev)

# ---- CPack: Debian packages ----
set(CPACK_PACKAGE_NAME jazari)
set(CPACK_PACKAGE_VENDOR "Jazari")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Jazari maintainers <jazari@localhost>")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON) # inter-package depends at the exact version
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_STRIP_FILES ON)
# dpkg-shlibdeps resolves the plugins' RUNPATH ($ORIGIN/../..) inside the runtime package, so
# libjz_kernels is found there; its shlibs file (GENERATE_SHLIBS) serves packages built on it.

set(jz_components jazari-runtime jazari-node jazari-server jazari-client jazari-dev)
if(JZ_HAVE_CUDA)
  list(APPEND jz_components jazari-cuda)
endif()
set(CPACK_COMPONENTS_ALL ${jz_components})
foreach(c ${jz_components})
  string(TOUPPER ${c} C)
  set(CPACK_DEBIAN_${C}_PACKAGE_NAME ${c})
  set(CPACK_DEBIAN_${C}_FILE_NAME DEB-DEFAULT)
endforeach()

set(CPACK_DEBIAN_JAZARI-RUNTIME_DESCRIPTION
  "Jazari job runtime: jazari-worker, the workload plugins and the compute library\nThe parts every machine that runs Jazari jobs needs: the per-job worker, the train,\ninfer, simulate, batch and example plugins, and libjz_kernels (cpu, OpenCL).")
set(CPACK_DEBIAN_JAZARI-RUNTIME_PACKAGE_SECTION libs)
# The shlibs file for libjz_kernels: what a package built against it depends on. The SONAME
# carries the API version, so any later package of the same SONAME will do. Written here rather
# than by CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS, which would warn about every plugin (modules
# have no SONAME, rightly).
file(WRITE ${JZ_GEN_DIR}/jazari-runtime/shlibs
     "libjz_kernels ${JZ_KERNELS_API_VERSION} jazari-runtime (>= ${PROJECT_VERSION})\n")
set(CPACK_DEBIAN_JAZARI-RUNTIME_PACKAGE_CONTROL_EXTRA ${JZ_GEN_DIR}/jazari-runtime/shlibs)

set(CPACK_DEBIAN_JAZARI-NODE_DESCRIPTION
  "Jazari node agent\njazari-node runs jobs on a compute node for jazarid, confined by Unix account and\ncgroup. Also the local agent jazarid starts on its own machine.")
set(CPACK_COMPONENT_JAZARI-NODE_DEPENDS jazari-runtime)
set(CPACK_DEBIAN_JAZARI-NODE_PACKAGE_CONTROL_EXTRA
    ${JZ_PACKAGING_DIR}/debian/jazari-node/postinst ${JZ_PACKAGING_DIR}/debian/jazari-node/prerm
    ${JZ_PACKAGING_DIR}/debian/jazari-node/postrm)
set(CPACK_DEBIAN_JAZARI-NODE_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# deb-systemd-helper and deb-systemd-invoke in the maintainer scripts.
set(CPACK_DEBIAN_JAZARI-NODE_PACKAGE_DEPENDS "init-system-helpers (>= 1.50)")

set(CPACK_DEBIAN_JAZARI-SERVER_DESCRIPTION
  "Jazari server (jazarid)\nThe REST API, scheduler, job store and local node of the Jazari GPU compute service,\nwith a systemd unit and a default configuration.")
set(CPACK_COMPONENT_JAZARI-SERVER_DEPENDS jazari-node)
set(CPACK_DEBIAN_JAZARI-SERVER_PACKAGE_DEPENDS "adduser, init-system-helpers (>= 1.50)")
set(CPACK_DEBIAN_JAZARI-SERVER_PACKAGE_CONTROL_EXTRA
    ${JZ_PACKAGING_DIR}/debian/jazari-server/conffiles
    ${JZ_PACKAGING_DIR}/debian/jazari-server/postinst
    ${JZ_PACKAGING_DIR}/debian/jazari-server/prerm
    ${JZ_PACKAGING_DIR}/debian/jazari-server/postrm)
set(CPACK_DEBIAN_JAZARI-SERVER_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_JAZARI-CLIENT_DESCRIPTION
  "Jazari command-line client\njazari submits and follows jobs through jazarid's REST API; jazari-sim replays\nscheduler traces.")
set(CPACK_DEBIAN_JAZARI-CLIENT_PACKAGE_SECTION utils)
# `jazari plugin check` runs jazari-worker (jazari-runtime) to describe a plugin.
set(CPACK_DEBIAN_JAZARI-CLIENT_PACKAGE_RECOMMENDS jazari-runtime)

set(CPACK_DEBIAN_JAZARI-DEV_DESCRIPTION
  "Jazari plugin development files\nHeaders of the plugin ABI and the compute library, libjz_kernels.so, the\npkg-config files jazari-plugin and jazari-kernels and the CMake package Jazari\n(find_package(Jazari), jazari_add_plugin).")
set(CPACK_COMPONENT_JAZARI-DEV_DEPENDS jazari-runtime)
set(CPACK_DEBIAN_JAZARI-DEV_PACKAGE_SECTION libdevel)

set(CPACK_DEBIAN_JAZARI-CUDA_DESCRIPTION
  "Jazari CUDA backend\nlibjz_kernels_cuda.so, loaded by libjz_kernels when present. Needs NVIDIA's CUDA\nruntime libraries (cuBLAS, and NCCL when built with it), which Debian does not package\nunder the names this build saw, so this package declares no dependency on them.")
set(CPACK_COMPONENT_JAZARI-CUDA_DEPENDS jazari-runtime)
set(CPACK_DEBIAN_JAZARI-CUDA_PACKAGE_SHLIBDEPS OFF)

include(CPack)
