/* REST handlers for booked compute slots (reservations.h): POST/GET /v1/reservations,
 * GET/DELETE /v1/reservations/{id}. Other tenants' bookings answer 404, as if absent. */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/reservations.h"

static bool id_from_path(struct jz_req *r, int64_t *id)
{
    const char *s = r->nseg >= 3 ? r->seg[2] : "";
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v <= 0) {
        jz_http_reply_error(r, 404, "not_found", NULL, "no reservation %.32s", s);
        return false;
    }
    *id = v;
    return true;
}

void jz_api_reservations_book(struct jz_req *r)
{
    json_t *out = NULL;
    const char *field = NULL;
    struct jz_error err = {0};
    if (jz_reservations_book(r->srv->reservations, r->user, r->body, &out, &field, &err)) {
        switch (err.code) {
        case JZ_EBUSY:
            jz_http_reply_error(r, 409, "conflict", field, "%s", err.msg);
            break;
        case JZ_EAGAIN:
            jz_http_reply_error(r, 409, "credits", field, "%s", err.msg);
            break;
        case JZ_ELIMIT:
            jz_http_reply_error(r, 409, "too_many", field, "%s", err.msg);
            break;
        default:
            jz_http_reply_jz_error(r, &err, field);
        }
        return;
    }
    jz_api_audit(r, "reservation.add", jz_json_str(out, "name", NULL),
                 json_pack("{s:O, s:O, s:O, s:O}", "tenant", json_object_get(out, "tenant"), "gpus",
                           json_object_get(out, "gpus"), "start", json_object_get(out, "start"),
                           "end", json_object_get(out, "end")));
    jz_http_reply_json(r, 201, out);
}

void jz_api_reservations_list(struct jz_req *r)
{
    const char *tenant = jz_req_query(r, "tenant");
    jz_http_reply_json(r, 200, jz_reservations_list(r->srv->reservations, r->user, tenant));
}

void jz_api_reservations_get(struct jz_req *r)
{
    int64_t id;
    if (!id_from_path(r, &id))
        return;
    json_t *o = jz_reservations_get(r->srv->reservations, r->user, id);
    if (!o) {
        jz_http_reply_error(r, 404, "not_found", NULL, "no reservation %lld", (long long)id);
        return;
    }
    jz_http_reply_json(r, 200, o);
}

void jz_api_reservations_cancel(struct jz_req *r)
{
    int64_t id;
    if (!id_from_path(r, &id))
        return;
    json_t *out = NULL;
    struct jz_error err = {0};
    if (jz_reservations_cancel(r->srv->reservations, r->user, id, &out, &err)) {
        jz_http_reply_jz_error(r, &err, NULL);
        return;
    }
    jz_api_audit(r, "reservation.cancel", jz_json_str(out, "name", NULL),
                 json_incref(json_object_get(out, "report")));
    jz_http_reply_json(r, 200, out);
}
