# Finds the system libraries every part of Jazari may use, as imported targets.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(LIBEVENT REQUIRED IMPORTED_TARGET libevent_core libevent_extra)
pkg_check_modules(HWLOC REQUIRED IMPORTED_TARGET hwloc)
find_package(SQLite3 REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
pkg_check_modules(CMOCKA IMPORTED_TARGET cmocka)
