/* Parameter schemas as JSON, and validation/normalisation of job parameters against them.
 * The same code checks compiled-in descriptors (worker) and user input (jazarid). */
#include "common/params.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One schema entry, borrowed from its JSON form. */
struct entry {
    const char *name;
    enum jz_param_type type;
    bool required;
    json_t *def;  /* borrowed, NULL when absent */
    bool bounded; /* min/max given and not both 0 */
    double min, max;
    json_t *choices; /* borrowed array of strings, NULL when absent */
};

static const char *const type_names[] = {
    [JZ_PARAM_STRING] = "string",
    [JZ_PARAM_INT] = "int",
    [JZ_PARAM_FLOAT] = "float",
    [JZ_PARAM_BOOL] = "bool",
    [JZ_PARAM_STRING_LIST] = "string_list",
    [JZ_PARAM_INT_LIST] = "int_list",
};

const char *jz_param_type_name(enum jz_param_type type)
{
    if ((int)type < JZ_PARAM_STRING || (int)type > JZ_PARAM_INT_LIST)
        return NULL;
    return type_names[type];
}

static int type_parse(const char *s, enum jz_param_type *out)
{
    for (int t = JZ_PARAM_STRING; t <= JZ_PARAM_INT_LIST; t++)
        if (strcmp(type_names[t], s) == 0) {
            *out = (enum jz_param_type)t;
            return 0;
        }
    return JZ_EINVAL;
}

static bool name_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > JZ_PARAMS_MAX_NAME || isdigit((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* Formats "params.NAME: ..." into err. Names in messages come from the schema or were checked
 * against it, except unknown names, which the caller shortens first. */
static int field_error(struct jz_error *err, char **field, const char *name, int code,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int field_error(struct jz_error *err, char **field, const char *name, int code,
                       const char *fmt, ...)
{
    char detail[JZ_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (field) {
        size_t len = strlen(name) + sizeof "params.";
        *field = malloc(len);
        if (*field)
            snprintf(*field, len, "params.%s", name);
    }
    return jz_error_set(err, code, "params.%s: %s", name, detail);
}

/* A short, printable rendering of a user's value for messages. */
static void quote_value(const json_t *v, char *buf, size_t len)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        snprintf(buf, len, "?");
    else if (strlen(text) > 40)
        snprintf(buf, len, "%.37s...", text);
    else
        snprintf(buf, len, "%s", text);
    free(text);
}

static int entry_parse(const json_t *e, size_t index, struct entry *out, struct jz_error *err)
{
    if (!json_is_object(e))
        return jz_error_set(err, JZ_EINVAL, "params: schema entry %zu is not an object", index);
    const char *name = json_string_value(json_object_get(e, "name"));
    if (!name || !name_is_valid(name))
        return jz_error_set(
            err, JZ_EINVAL,
            "params: schema entry %zu has no valid name ([A-Za-z_][A-Za-z0-9_]{0,63})", index);
    const char *type = json_string_value(json_object_get(e, "type"));
    memset(out, 0, sizeof *out);
    out->name = name;
    if (!type || type_parse(type, &out->type) != 0)
        return jz_error_set(err, JZ_EINVAL, "params: schema entry '%s' has an unknown type", name);
    json_t *req = json_object_get(e, "required");
    if (req && !json_is_boolean(req))
        return jz_error_set(err, JZ_EINVAL, "params: schema entry '%s': required is not a bool",
                            name);
    out->required = json_is_true(req);
    out->def = json_object_get(e, "default");
    if (out->def && json_is_null(out->def))
        out->def = NULL;
    json_t *mn = json_object_get(e, "min"), *mx = json_object_get(e, "max");
    if ((mn && !json_is_number(mn)) || (mx && !json_is_number(mx)))
        return jz_error_set(err, JZ_EINVAL, "params: schema entry '%s': min/max must be numbers",
                            name);
    out->min = mn ? json_number_value(mn) : 0;
    out->max = mx ? json_number_value(mx) : 0;
    out->bounded = !(out->min == 0 && out->max == 0);
    if (out->bounded && !(out->min <= out->max))
        return jz_error_set(err, JZ_EINVAL, "params: schema entry '%s': min > max", name);
    bool length_bound = out->type != JZ_PARAM_INT && out->type != JZ_PARAM_FLOAT;
    if (out->bounded && length_bound && out->min < 0)
        return jz_error_set(err, JZ_EINVAL, "params: schema entry '%s': negative length bound",
                            name);
    out->choices = json_object_get(e, "choices");
    if (out->choices) {
        if (out->type != JZ_PARAM_STRING && out->type != JZ_PARAM_STRING_LIST)
            return jz_error_set(err, JZ_EINVAL,
                                "params: schema entry '%s': choices only apply to strings", name);
        if (!json_is_array(out->choices) || json_array_size(out->choices) == 0)
            return jz_error_set(err, JZ_EINVAL,
                                "params: schema entry '%s': choices must be a non-empty array",
                                name);
        size_t i;
        json_t *c;
        json_array_foreach(out->choices, i, c)
        {
            if (!json_is_string(c))
                return jz_error_set(err, JZ_EINVAL,
                                    "params: schema entry '%s': choices must be strings", name);
        }
    }
    return 0;
}

static bool choice_allowed(const struct entry *e, const char *s)
{
    if (!e->choices)
        return true;
    size_t i;
    json_t *c;
    json_array_foreach(e->choices, i, c)
    {
        if (strcmp(json_string_value(c), s) == 0)
            return true;
    }
    return false;
}

static void choices_text(const struct entry *e, char *buf, size_t len)
{
    size_t used = 0;
    size_t i;
    json_t *c;
    buf[0] = '\0';
    json_array_foreach(e->choices, i, c)
    {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", json_string_value(c));
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
}

static void trim(const char *s, const char **start, size_t *n)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    *start = s;
    *n = len;
}

/* Parses a whole decimal integer (surrounding spaces allowed). */
static bool parse_int(const char *s, size_t n, int64_t *out)
{
    char buf[32];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    const char *b;
    size_t bn;
    trim(buf, &b, &bn);
    if (bn == 0)
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(b, &end, 10);
    if (errno || end != b + bn)
        return false;
    *out = v;
    return true;
}

static bool json_to_int(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* 2^63 is exactly representable; anything at or beyond it overflows int64. */
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != (double)(int64_t)d)
            return false;
        *out = (int64_t)d;
        return true;
    }
    if (json_is_string(v))
        return parse_int(json_string_value(v), json_string_length(v), out);
    return false;
}

static int check_num_bounds(const struct entry *e, double v, struct jz_error *err, char **field)
{
    if (!e->bounded || (v >= e->min && v <= e->max))
        return 0;
    /* %g would print an int bound of 1000000 as 1e+06. */
    if (e->type == JZ_PARAM_INT)
        return field_error(err, field, e->name, JZ_ERANGE, "%.0f is outside [%.0f, %.0f]", v,
                           e->min, e->max);
    return field_error(err, field, e->name, JZ_ERANGE, "%g is outside [%g, %g]", v, e->min, e->max);
}

static int check_count(const struct entry *e, size_t n, size_t hard_max, const char *what,
                       struct jz_error *err, char **field)
{
    if (n > hard_max)
        return field_error(err, field, e->name, JZ_ELIMIT, "more than %zu %s", hard_max, what);
    if (e->bounded && ((double)n < e->min || (double)n > e->max))
        return field_error(err, field, e->name, JZ_ERANGE, "%zu %s, expected %g to %g", n, what,
                           e->min, e->max);
    return 0;
}

static int coerce_string_elem(const struct entry *e, const json_t *v, bool is_list,
                              struct jz_error *err, char **field)
{
    size_t len = json_string_length(v);
    if (len > JZ_PARAMS_MAX_STRING)
        return field_error(err, field, e->name, JZ_ELIMIT, "string longer than %d bytes",
                           JZ_PARAMS_MAX_STRING);
    if (memchr(json_string_value(v), '\0', len))
        return field_error(err, field, e->name, JZ_EINVAL, "string contains a NUL byte");
    if (!is_list) {
        int rc = check_count(e, len, JZ_PARAMS_MAX_STRING, "bytes", err, field);
        if (rc)
            return rc;
    }
    if (!choice_allowed(e, json_string_value(v))) {
        char allowed[160];
        choices_text(e, allowed, sizeof allowed);
        char shown[48];
        quote_value(v, shown, sizeof shown);
        return field_error(err, field, e->name, JZ_EINVAL, "%s is not one of: %s", shown, allowed);
    }
    return 0;
}

/* Converts one value to the entry's type; *out is a new reference on success. */
static int coerce(const struct entry *e, const json_t *v, json_t **out, struct jz_error *err,
                  char **field)
{
    char shown[48];
    int rc;
    switch (e->type) {
    case JZ_PARAM_STRING:
        if (!json_is_string(v)) {
            quote_value(v, shown, sizeof shown);
            return field_error(err, field, e->name, JZ_EINVAL, "expected a string, got %s", shown);
        }
        if ((rc = coerce_string_elem(e, v, false, err, field)))
            return rc;
        *out = json_deep_copy(v);
        break;
    case JZ_PARAM_INT: {
        int64_t i;
        if (!json_to_int(v, &i)) {
            quote_value(v, shown, sizeof shown);
            return field_error(err, field, e->name, JZ_EINVAL, "expected an integer, got %s",
                               shown);
        }
        if ((rc = check_num_bounds(e, (double)i, err, field)))
            return rc;
        *out = json_integer(i);
        break;
    }
    case JZ_PARAM_FLOAT: {
        double d;
        bool ok = false;
        if (json_is_number(v)) {
            d = json_number_value(v);
            ok = true;
        } else if (json_is_string(v) && json_string_length(v) < 64) {
            const char *s;
            size_t n;
            trim(json_string_value(v), &s, &n);
            char *end;
            errno = 0;
            d = n ? strtod(s, &end) : 0;
            ok = n && errno == 0 && end == s + n && isfinite(d);
        }
        if (!ok) {
            quote_value(v, shown, sizeof shown);
            return field_error(err, field, e->name, JZ_EINVAL, "expected a number, got %s", shown);
        }
        if ((rc = check_num_bounds(e, d, err, field)))
            return rc;
        *out = json_real(d);
        break;
    }
    case JZ_PARAM_BOOL:
        if (json_is_boolean(v)) {
            *out = json_boolean(json_is_true(v));
        } else if (json_is_string(v) && strcmp(json_string_value(v), "true") == 0) {
            *out = json_true();
        } else if (json_is_string(v) && strcmp(json_string_value(v), "false") == 0) {
            *out = json_false();
        } else {
            quote_value(v, shown, sizeof shown);
            return field_error(err, field, e->name, JZ_EINVAL, "expected true or false, got %s",
                               shown);
        }
        break;
    case JZ_PARAM_STRING_LIST: {
        if (json_is_string(v)) {
            if ((rc = check_count(e, 1, JZ_PARAMS_MAX_LIST, "elements", err, field)) ||
                (rc = coerce_string_elem(e, v, true, err, field)))
                return rc;
            *out = json_pack("[O]", v);
            break;
        }
        if (!json_is_array(v)) {
            quote_value(v, shown, sizeof shown);
            return field_error(err, field, e->name, JZ_EINVAL, "expected a list of strings, got %s",
                               shown);
        }
        if ((rc = check_count(e, json_array_size(v), JZ_PARAMS_MAX_LIST, "elements", err, field)))
            return rc;
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (!json_is_string(x))
                return field_error(err, field, e->name, JZ_EINVAL, "element %zu is not a string",
                                   i);
            if ((rc = coerce_string_elem(e, x, true, err, field)))
                return rc;
        }
        *out = json_deep_copy(v);
        break;
    }
    case JZ_PARAM_INT_LIST: {
        json_t *list = json_array();
        if (!list)
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        if (json_is_string(v)) {
            /* "256,128": the form a command line gives; an empty string is an empty list. */
            const char *p = json_string_value(v);
            const char *s;
            size_t n;
            trim(p, &s, &n);
            while (n > 0) {
                const char *comma = memchr(s, ',', n);
                size_t part = comma ? (size_t)(comma - s) : n;
                int64_t iv;
                if (json_array_size(list) >= JZ_PARAMS_MAX_LIST) {
                    json_decref(list);
                    return field_error(err, field, e->name, JZ_ELIMIT, "more than %d elements",
                                       JZ_PARAMS_MAX_LIST);
                }
                if (!parse_int(s, part, &iv)) {
                    json_decref(list);
                    return field_error(err, field, e->name, JZ_EINVAL,
                                       "element %zu of the list is not an integer",
                                       json_array_size(list));
                }
                json_array_append_new(list, json_integer(iv));
                if (!comma)
                    break;
                n -= part + 1;
                s = comma + 1;
                if (n == 0) { /* a trailing comma leaves an empty element */
                    json_decref(list);
                    return field_error(err, field, e->name, JZ_EINVAL, "empty element in the list");
                }
            }
        } else if (json_is_array(v)) {
            if (json_array_size(v) > JZ_PARAMS_MAX_LIST) {
                json_decref(list);
                return field_error(err, field, e->name, JZ_ELIMIT, "more than %d elements",
                                   JZ_PARAMS_MAX_LIST);
            }
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x)
            {
                int64_t iv;
                if (!json_to_int(x, &iv)) {
                    json_decref(list);
                    return field_error(err, field, e->name, JZ_EINVAL,
                                       "element %zu is not an integer", i);
                }
                json_array_append_new(list, json_integer(iv));
            }
        } else if (json_is_integer(v)) {
            json_array_append_new(list, json_integer(json_integer_value(v)));
        } else {
            json_decref(list);
            quote_value(v, shown, sizeof shown);
            return field_error(err, field, e->name, JZ_EINVAL,
                               "expected a list of integers, got %s", shown);
        }
        if ((rc = check_count(e, json_array_size(list), JZ_PARAMS_MAX_LIST, "elements", err,
                              field))) {
            json_decref(list);
            return rc;
        }
        *out = list;
        break;
    }
    default:
        return field_error(err, field, e->name, JZ_EINTERNAL, "unknown type");
    }
    if (!*out)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    return 0;
}

static int schema_error_field(char **field)
{
    if (field)
        *field = strdup("params");
    return 0;
}

int jz_params_validate(const json_t *schema, const json_t *params, json_t **normalized,
                       char **field, struct jz_error *err)
{
    if (!json_is_array(schema) || json_array_size(schema) > JZ_PARAMS_MAX_COUNT) {
        schema_error_field(field);
        return jz_error_set(err, JZ_EINVAL, "params: schema is not an array of at most %d entries",
                            JZ_PARAMS_MAX_COUNT);
    }
    if (params && !json_is_object(params) && !json_is_null(params)) {
        schema_error_field(field);
        return jz_error_set(err, JZ_EINVAL, "params: expected an object of name: value");
    }
    if (json_is_object(params) && json_object_size(params) > JZ_PARAMS_MAX_COUNT) {
        schema_error_field(field);
        return jz_error_set(err, JZ_ELIMIT, "params: more than %d parameters", JZ_PARAMS_MAX_COUNT);
    }
    size_t n = json_array_size(schema);
    struct entry *entries = calloc(n ? n : 1, sizeof *entries);
    json_t *out = json_object();
    if (!entries || !out) {
        free(entries);
        json_decref(out);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = entry_parse(json_array_get(schema, i), i, &entries[i], err))) {
            schema_error_field(field);
            goto fail;
        }
    }
    if (json_is_object(params)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)params, key, val)
        {
            bool known = false;
            for (size_t i = 0; i < n && !known; i++)
                known = strcmp(entries[i].name, key) == 0;
            if (!known) {
                /* The name is the user's: show a bounded, printable form of it. */
                char shown[JZ_PARAMS_MAX_NAME + 1];
                size_t k = 0;
                for (; key[k] && k < JZ_PARAMS_MAX_NAME; k++)
                    shown[k] = isprint((unsigned char)key[k]) ? key[k] : '?';
                shown[k] = '\0';
                rc = field_error(err, field, shown, JZ_EINVAL, "unknown parameter");
                goto fail;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct entry *e = &entries[i];
        json_t *v = json_is_object(params) ? json_object_get(params, e->name) : NULL;
        if (v && json_is_null(v))
            v = NULL;
        if (!v && e->def)
            v = e->def;
        if (!v) {
            if (e->required) {
                rc = field_error(err, field, e->name, JZ_EINVAL, "required");
                goto fail;
            }
            continue;
        }
        json_t *conv = NULL;
        if ((rc = coerce(e, v, &conv, err, field)))
            goto fail;
        json_object_set_new(out, e->name, conv);
    }
    free(entries);
    *normalized = out;
    return 0;
fail:
    free(entries);
    json_decref(out);
    return rc;
}

/* Whole bounds print as integers ("max": 4096), which is what list and string bounds are. */
static json_t *bound_json(double d)
{
    if (d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(int64_t)d)
        return json_integer((json_int_t)d);
    return json_real(d);
}

/* Builds the JSON form without checking it. */
static json_t *specs_to_json(const struct jz_param_spec *specs, size_t n, struct jz_error *err)
{
    json_t *arr = json_array();
    if (!arr) {
        jz_error_set(err, JZ_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const struct jz_param_spec *s = &specs[i];
        const char *tname = jz_param_type_name(s->type);
        if (!s->name || !tname) {
            jz_error_set(err, JZ_EINVAL, "params: spec %zu has no name or an unknown type", i);
            goto fail;
        }
        json_t *e =
            json_pack("{s:s, s:s, s:b}", "name", s->name, "type", tname, "required", s->required);
        if (!e) {
            jz_error_set(err, JZ_EINVAL, "params: spec %zu has a name that is not UTF-8", i);
            goto fail;
        }
        json_array_append_new(arr, e);
        if (s->default_json) {
            json_error_t jerr;
            json_t *d = json_loads(s->default_json, JSON_DECODE_ANY, &jerr);
            if (!d) {
                jz_error_set(err, JZ_EINVAL, "params: spec '%s' has a default that is not JSON: %s",
                             s->name, jerr.text);
                goto fail;
            }
            json_object_set_new(e, "default", d);
        }
        if (!(s->min == 0 && s->max == 0)) {
            if (!isfinite(s->min) || !isfinite(s->max)) {
                jz_error_set(err, JZ_EINVAL, "params: spec '%s' has a non-finite bound", s->name);
                goto fail;
            }
            json_object_set_new(e, "min", bound_json(s->min));
            json_object_set_new(e, "max", bound_json(s->max));
        }
        if (s->choices) {
            json_t *c = json_array();
            json_object_set_new(e, "choices", c);
            const char *p = s->choices;
            for (;;) {
                const char *bar = strchr(p, '|');
                size_t len = bar ? (size_t)(bar - p) : strlen(p);
                json_t *str = json_stringn(p, len);
                if (!str || len == 0) {
                    json_decref(str);
                    jz_error_set(err, JZ_EINVAL,
                                 "params: spec '%s' has an empty or non-UTF-8 choice", s->name);
                    goto fail;
                }
                json_array_append_new(c, str);
                if (!bar)
                    break;
                p = bar + 1;
            }
        }
        if (s->help) {
            json_t *h = json_string(s->help);
            if (!h) {
                jz_error_set(err, JZ_EINVAL, "params: spec '%s' has help that is not UTF-8",
                             s->name);
                goto fail;
            }
            json_object_set_new(e, "help", h);
        }
    }
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

/* Schema-level checks beyond one entry: unique names, defaults that validate. */
static int schema_check(const json_t *schema, struct jz_error *err)
{
    size_t n = json_array_size(schema);
    if (n > JZ_PARAMS_MAX_COUNT)
        return jz_error_set(err, JZ_EINVAL, "params: more than %d parameters in the schema",
                            JZ_PARAMS_MAX_COUNT);
    for (size_t i = 0; i < n; i++) {
        struct entry e;
        int rc = entry_parse(json_array_get(schema, i), i, &e, err);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(e.name,
                       json_string_value(json_object_get(json_array_get(schema, j), "name"))) == 0)
                return jz_error_set(err, JZ_EINVAL, "params: '%s' is declared twice", e.name);
        if (e.def) {
            json_t *conv = NULL;
            struct jz_error derr;
            if (coerce(&e, e.def, &conv, &derr, NULL))
                return jz_error_set(err, JZ_EINVAL, "params: bad default: %s", derr.msg);
            json_decref(conv);
        }
    }
    return 0;
}

int jz_params_specs_check(const struct jz_param_spec *specs, size_t n, struct jz_error *err)
{
    if (n > JZ_PARAMS_MAX_COUNT)
        return jz_error_set(err, JZ_EINVAL, "params: more than %d parameters in the schema",
                            JZ_PARAMS_MAX_COUNT);
    if (n > 0 && !specs)
        return jz_error_set(err, JZ_EINVAL, "params: n_params is %zu but params is NULL", n);
    json_t *schema = specs_to_json(specs, n, err);
    if (!schema)
        return err ? err->code : JZ_EINVAL;
    int rc = schema_check(schema, err);
    json_decref(schema);
    return rc;
}

json_t *jz_params_schema_to_json(const struct jz_param_spec *specs, size_t n)
{
    if (jz_params_specs_check(specs, n, NULL) != 0)
        return NULL;
    json_t *schema = specs_to_json(specs, n, NULL);
    /* Defaults are shown in their normalized form ("1" for a float becomes 1.0). */
    for (size_t i = 0; schema && i < n; i++) {
        json_t *e = json_array_get(schema, i);
        struct entry ent;
        json_t *conv = NULL;
        if (entry_parse(e, i, &ent, NULL) == 0 && ent.def &&
            coerce(&ent, ent.def, &conv, NULL, NULL) == 0)
            json_object_set_new(e, "default", conv);
    }
    return schema;
}
