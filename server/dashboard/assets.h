/* The dashboard's files as jazarid carries them: generated at build time from server/dashboard/
 * by embed.cmake, served by server/api_dashboard.c. */
#ifndef JZ_SERVER_DASHBOARD_ASSETS_H
#define JZ_SERVER_DASHBOARD_ASSETS_H

#include <stddef.h>

struct jz_dashboard_asset {
    const char *name; /* file name, as in /ui/NAME ("app.js") */
    const char *type; /* Content-Type */
    const char *etag; /* strong ETag, quotes included: a hash of the content */
    const unsigned char *data;
    size_t len;
};

extern const struct jz_dashboard_asset jz_dashboard_assets[];
extern const size_t jz_dashboard_asset_count;

#endif
