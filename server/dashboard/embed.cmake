# Turns the dashboard's files (SOURCES, '|'-separated) into one C file (OUT) holding each as a
# byte array with its name, media type and ETag, so that jazarid serves the dashboard from its
# own binary: nothing to install beside it, nothing fetched from elsewhere (server/api_dashboard.c).
string(REPLACE "|" ";" SOURCES "${SOURCES}")
set(arrays "")
set(table "")
set(count 0)
foreach(f ${SOURCES})
  get_filename_component(name ${f} NAME)
  get_filename_component(ext ${f} LAST_EXT)
  if(ext STREQUAL ".html")
    set(type "text/html; charset=utf-8")
  elseif(ext STREQUAL ".js")
    set(type "text/javascript; charset=utf-8")
  elseif(ext STREQUAL ".css")
    set(type "text/css; charset=utf-8")
  elseif(ext STREQUAL ".svg")
    set(type "image/svg+xml")
  else()
    message(FATAL_ERROR "${f}: no media type for '${ext}' files; add one to embed.cmake")
  endif()
  if(NOT name MATCHES "^[A-Za-z0-9][A-Za-z0-9._-]*$")
    message(FATAL_ERROR "${f}: asset names are letters, digits, '.', '_' and '-'")
  endif()
  file(READ ${f} hex HEX)
  file(SIZE ${f} len)
  # A strong validator from the content itself: it changes exactly when the bytes do.
  file(SHA256 ${f} sum)
  string(SUBSTRING "${sum}" 0 32 etag)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND arrays "static const unsigned char asset_${count}[] = {${hex}0x00};\n")
  string(APPEND table "    {\"${name}\", \"${type}\", \"\\\"${etag}\\\"\", asset_${count}, ${len}},\n")
  math(EXPR count "${count} + 1")
endforeach()
if(NOT table MATCHES "\"index.html\"")
  message(FATAL_ERROR "server/dashboard/ has no index.html: GET / would have nothing to serve")
endif()
file(WRITE ${OUT}.tmp
  "/* Generated from server/dashboard/ by embed.cmake: do not edit. */\n"
  "#include \"server/dashboard/assets.h\"\n\n${arrays}\n"
  "const struct jz_dashboard_asset jz_dashboard_assets[] = {\n${table}};\n"
  "const size_t jz_dashboard_asset_count = ${count};\n")
file(RENAME ${OUT}.tmp ${OUT})
