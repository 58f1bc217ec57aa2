# Turns the OpenCL kernel files (SOURCES) into one C file (OUT) holding them as a string, so the
# library carries its kernels and compiles them on first use.
string(REPLACE "|" ";" SOURCES "${SOURCES}")
set(text "")
foreach(f ${SOURCES})
  file(READ ${f} content)
  get_filename_component(name ${f} NAME)
  string(APPEND text "// ---- ${name} ----\n${content}\n")
endforeach()
file(WRITE ${OUT}.tmp "")
string(LENGTH "${text}" len)
file(WRITE ${OUT}.txt "${text}")
file(READ ${OUT}.txt hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
file(WRITE ${OUT}.tmp "/* Generated from the kernels/opencl sources by embed.cmake: do not edit. */\n"
  "#include <stddef.h>\nconst char jzk_cl_source[] = {${hex}0x00};\n"
  "const size_t jzk_cl_source_len = ${len};\n")
file(RENAME ${OUT}.tmp ${OUT})
file(REMOVE ${OUT}.txt)
