/* PNG output of scalar fields for the simulate plugin (libpng). */
#ifndef JZ_PLUGIN_IMAGE_H
#define JZ_PLUGIN_IMAGE_H

#include <stddef.h>

#include <jazari/error.h>

#define JZ_PNG_MAX_SIDE 16384

/* Writes a width x height field (row y at field + y * width) as an 8-bit RGB PNG with a
 * blue-white-red colour map over [lo, hi] (values outside are clamped). Row 0 is the top. */
int jz_png_write_field(const char *path, const float *field, size_t width, size_t height,
                       float lo, float hi, struct jz_error *err);

#endif
