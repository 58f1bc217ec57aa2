/* Colour-mapped PNG output of 2-D fields with libpng (see image.h). */
#include "image.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Blue (lo) -> white (middle) -> red (hi): diverging, so the sign of a deviation reads at once. */
static void colour(float t, unsigned char *rgb)
{
    if (!(t >= 0)) /* also catches NaN */
        t = 0;
    if (t > 1)
        t = 1;
    if (t < 0.5f) {
        float s = t * 2;
        rgb[0] = (unsigned char)(255 * s);
        rgb[1] = (unsigned char)(255 * s);
        rgb[2] = 255;
    } else {
        float s = (1 - t) * 2;
        rgb[0] = 255;
        rgb[1] = (unsigned char)(255 * s);
        rgb[2] = (unsigned char)(255 * s);
    }
}

int jz_png_write_field(const char *path, const float *field, size_t width, size_t height,
                       float lo, float hi, struct jz_error *err)
{
    if (width < 1 || height < 1 || width > JZ_PNG_MAX_SIDE || height > JZ_PNG_MAX_SIDE)
        return jz_error_set(err, JZ_ELIMIT, "PNG of %zu x %zu pixels (1..%d per side)", width, height,
                       JZ_PNG_MAX_SIDE);
    FILE *f = fopen(path, "wb");
    if (!f)
        return jz_error_set(err, JZ_EIO, "cannot create %s: %s", path, strerror(errno));
    unsigned char *row = malloc(3 * width);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = 0;
    if (!row || !png || !info) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory for the PNG writer");
        goto done;
    }
    if (setjmp(png_jmpbuf(png))) {
        rc = jz_error_set(err, JZ_EIO, "libpng failed writing %s", path);
        goto done;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    float span = hi > lo ? hi - lo : 1;
    for (size_t y = 0; y < height; y++) {
        for (size_t x = 0; x < width; x++)
            colour((field[y * width + x] - lo) / span, row + 3 * x);
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
done:
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    free(row);
    if (fclose(f) != 0 && rc == 0)
        rc = jz_error_set(err, JZ_EIO, "cannot close %s: %s", path, strerror(errno));
    return rc;
}
