#!/usr/bin/env python3
"""Keeps docs/openapi.json in step with jazarid's route table (server/http.c routes[]).

Checks that docs/openapi.json is a structurally valid OpenAPI 3.0 document (the parts this
project uses), that every route in server/http.c is documented with the same method, path,
access (public / bearer; user / admin) and handler, that no documented operation lacks a route
(unless it is marked "x-jazari-planned": documented ahead of its code), that operations taking a
JSON body document it (and its 413), and that server/http_query.c's table of accepted query
parameters has an entry for every route and planned operation, equal to the parameters the
document gives it (jazarid refuses any other with 400). Standard library only.

usage: check_openapi.py [--source DIR]   (DIR holds server/http.c, server/http_query.c and
                                          docs/openapi.json)
"""
import argparse
import json
import os
import re
import sys

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PATH_ITEM_KEYS = set(METHODS) | {"$ref", "summary", "description", "servers", "parameters"}
COMPONENT_KINDS = ("schemas", "responses", "parameters", "examples", "requestBodies", "headers",
                   "securitySchemes", "links", "callbacks")
STATUS_RE = re.compile(r"^(default|[1-5](\d\d|XX))$")
COMPONENT_NAME_RE = re.compile(r"^[a-zA-Z0-9._-]+$")
ROUTE_RE = re.compile(
    r"\{\s*EVHTTP_REQ_([A-Z]+)\s*,\s*\"([^\"]*)\"\s*,\s*ROUTE_([A-Z]+)\s*,\s*(true|false)\s*,"
    r"\s*([A-Za-z_]\w*)\s*\}")

QUERY_RE = re.compile(
    r"\{\s*EVHTTP_REQ_([A-Z]+)\s*,\s*\"([^\"]*)\"\s*,\s*\{([^{}]*)\}\s*\}")


class Checker:
    def __init__(self):
        self.errors = []
        self.notes = []

    def fail(self, msg):
        self.errors.append(msg)

    def note(self, msg):
        self.notes.append(msg)


# --- the route table ------------------------------------------------------------------------

def read_source(path, chk):
    """The text of a C file without its comments (but with "/*" inside string literals such as
    "v1/jobs/*/log"); None when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        chk.fail("cannot read %s: %s" % (path, e))
        return None
    return re.sub(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*',
                  lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text, flags=re.S)


def pattern_key(pattern):
    return "/" + "/".join("{}" if s == "*" else s for s in pattern.split("/") if s)


def read_routes(http_c, chk):
    text = read_source(http_c, chk)
    if text is None:
        return []
    m = re.search(r"\broutes\s*\[\s*\]\s*=\s*\{(.*?)\n\s*\}\s*;", text, re.S)
    if not m:
        chk.fail("%s: cannot find the 'routes[] = { ... };' table" % http_c)
        return []
    table = m.group(1)
    routes = []
    for rm in ROUTE_RE.finditer(table):
        method, pattern, access, body, handler = rm.groups()
        routes.append({"method": method.lower(), "pattern": pattern,
                       "key": pattern_key(pattern),
                       "access": access.lower(), "takes_body": body == "true",
                       "handler": handler})
    # Every entry that looks like a route must have been understood.
    entries = len(re.findall(r"\{\s*EVHTTP_REQ_", table))
    if entries != len(routes):
        chk.fail("%s: the routes[] table has %d entries but only %d match the expected form "
                 "{EVHTTP_REQ_X, \"pattern\", ROUTE_X, true|false, handler}; update this "
                 "checker's ROUTE_RE" % (http_c, entries, len(routes)))
    if not routes:
        chk.fail("%s: the routes[] table is empty or was not understood" % http_c)
    return routes


# --- structural checks ----------------------------------------------------------------------

def resolve_pointer(doc, ref):
    if not ref.startswith("#"):
        return None, "only local references (#/...) are used in this project"
    node = doc
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None, "does not resolve"
    return node, None


def check_refs(doc, node, where, chk):
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str):
                chk.fail("%s: $ref is not a string" % where)
            else:
                _, why = resolve_pointer(doc, ref)
                if why:
                    chk.fail("%s: $ref %r %s" % (where, ref, why))
        for k, v in node.items():
            check_refs(doc, v, "%s/%s" % (where, k), chk)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_refs(doc, v, "%s/%d" % (where, i), chk)


def deref(doc, node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 32:
        target, why = resolve_pointer(doc, node["$ref"])
        if why:
            return None
        node = target
        seen += 1
    return node


def check_schema(doc, schema, where, chk):
    """A light check of a Schema Object (OpenAPI 3.0 dialect)."""
    schema = deref(doc, schema)
    if schema is None:
        return
    if not isinstance(schema, dict):
        chk.fail("%s: a schema must be an object" % where)
        return
    t = schema.get("type")
    if t is not None and t not in ("string", "number", "integer", "boolean", "array", "object"):
        chk.fail("%s: type %r is not an OpenAPI 3.0 type (3.0 has no 'null'; use nullable)"
                 % (where, t))
    if t == "array" and "items" not in schema:
        chk.fail("%s: an array schema needs items" % where)
    req = schema.get("required")
    if req is not None:
        if not isinstance(req, list) or not req or not all(isinstance(x, str) for x in req):
            chk.fail("%s: required must be a non-empty list of names" % where)
        elif "properties" in schema:
            missing = [x for x in req if x not in schema["properties"]]
            if missing:
                chk.fail("%s: required names %s are not among its properties" % (where, missing))
    for k in ("minimum", "maximum"):
        if k in schema and not isinstance(schema[k], (int, float)):
            chk.fail("%s: %s must be a number" % (where, k))
    if "minimum" in schema and "maximum" in schema and schema["minimum"] > schema["maximum"]:
        chk.fail("%s: minimum > maximum" % where)
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except re.error as e:
            chk.fail("%s: bad pattern: %s" % (where, e))
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        chk.fail("%s: enum must be a non-empty list" % where)
    for k, v in schema.get("properties", {}).items():
        check_schema(doc, v, "%s/properties/%s" % (where, k), chk)
    if isinstance(schema.get("additionalProperties"), dict):
        check_schema(doc, schema["additionalProperties"], where + "/additionalProperties", chk)
    if "items" in schema:
        check_schema(doc, schema["items"], where + "/items", chk)
    for k in ("allOf", "anyOf", "oneOf"):
        for i, s in enumerate(schema.get(k, [])):
            check_schema(doc, s, "%s/%s/%d" % (where, k, i), chk)


def check_content(doc, content, where, chk):
    if not isinstance(content, dict) or not content:
        chk.fail("%s: content must map media types to Media Type objects" % where)
        return
    for mt, media in content.items():
        if "/" not in mt:
            chk.fail("%s: %r is not a media type" % (where, mt))
        if not isinstance(media, dict):
            chk.fail("%s/%s: must be an object" % (where, mt))
        elif "schema" in media:
            check_schema(doc, media["schema"], "%s/%s/schema" % (where, mt), chk)


def effective_security(doc, operation):
    return operation["security"] if "security" in operation else doc.get("security", [])


def check_structure(doc, chk):
    if not isinstance(doc, dict):
        chk.fail("the document is not a JSON object")
        return
    v = doc.get("openapi")
    if not isinstance(v, str) or not re.match(r"^3\.0\.\d+$", v):
        chk.fail("'openapi' must be a 3.0.x version string, found %r" % (v,))
    info = doc.get("info")
    if not isinstance(info, dict):
        chk.fail("'info' is missing")
    else:
        for k in ("title", "version"):
            if not isinstance(info.get(k), str) or not info.get(k):
                chk.fail("info.%s must be a non-empty string" % k)
    if not isinstance(doc.get("paths"), dict):
        chk.fail("'paths' is missing")
        return
    comps = doc.get("components", {})
    if not isinstance(comps, dict):
        chk.fail("'components' must be an object")
        comps = {}
    for kind, table in comps.items():
        if kind not in COMPONENT_KINDS and not kind.startswith("x-"):
            chk.fail("components.%s is not an OpenAPI 3.0 component kind" % kind)
        for name in (table if isinstance(table, dict) else {}):
            if not COMPONENT_NAME_RE.match(name):
                chk.fail("components.%s.%s: bad component name" % (kind, name))
    for name, schema in comps.get("schemas", {}).items():
        check_schema(doc, schema, "#/components/schemas/" + name, chk)
    schemes = comps.get("securitySchemes", {})
    for name, s in schemes.items():
        if s.get("type") not in ("apiKey", "http", "oauth2", "openIdConnect"):
            chk.fail("securityScheme %s: bad type %r" % (name, s.get("type")))
        if s.get("type") == "http" and not s.get("scheme"):
            chk.fail("securityScheme %s: http schemes need 'scheme'" % name)

    check_refs(doc, doc, "#", chk)

    def check_security(reqs, where):
        if not isinstance(reqs, list):
            chk.fail("%s: security must be a list" % where)
            return
        for req in reqs:
            if not isinstance(req, dict):
                chk.fail("%s: a security requirement must be an object" % where)
                continue
            for name in req:
                if name not in schemes:
                    chk.fail("%s: security scheme %r is not in components.securitySchemes"
                             % (where, name))

    if "security" in doc:
        check_security(doc["security"], "#/security")

    op_ids = {}
    for path, item in doc["paths"].items():
        where = "paths[%s]" % path
        if not path.startswith("/"):
            chk.fail("%s: a path must start with '/'" % where)
        if not isinstance(item, dict):
            chk.fail("%s: must be an object" % where)
            continue
        for k in item:
            if k not in PATH_ITEM_KEYS and not k.startswith("x-"):
                chk.fail("%s: unexpected key %r" % (where, k))
        templated = re.findall(r"\{([^}]+)\}", path)
        ops = [(m, item[m]) for m in METHODS if m in item]
        if not ops:
            chk.fail("%s: no operations" % where)
        for method, o in ops:
            ow = "%s %s" % (method.upper(), path)
            if not isinstance(o, dict):
                chk.fail("%s: the operation must be an object" % ow)
                continue
            oid = o.get("operationId")
            if not isinstance(oid, str) or not oid:
                chk.fail("%s: missing operationId" % ow)
            elif oid in op_ids:
                chk.fail("%s: operationId %r is also used by %s" % (ow, oid, op_ids[oid]))
            else:
                op_ids[oid] = ow
            resps = o.get("responses")
            if not isinstance(resps, dict) or not resps:
                chk.fail("%s: missing responses" % ow)
                resps = {}
            for code, r in resps.items():
                if not STATUS_RE.match(str(code)):
                    chk.fail("%s: response key %r is not a status code" % (ow, code))
                r = deref(doc, r)
                if not isinstance(r, dict) or not isinstance(r.get("description"), str):
                    chk.fail("%s: response %s needs a description" % (ow, code))
                elif "content" in r:
                    check_content(doc, r["content"], "%s responses/%s" % (ow, code), chk)
            if "security" in o:
                check_security(o["security"], ow)
            # Parameters: path-level and operation-level, deduplicated by (name, in).
            params = {}
            for p in list(item.get("parameters", [])) + list(o.get("parameters", [])):
                p = deref(doc, p)
                if not isinstance(p, dict):
                    continue
                name, loc = p.get("name"), p.get("in")
                if not isinstance(name, str) or loc not in ("query", "header", "path", "cookie"):
                    chk.fail("%s: parameter %r needs a name and in: query|header|path|cookie"
                             % (ow, p))
                    continue
                if ("schema" in p) == ("content" in p):
                    chk.fail("%s: parameter %s needs exactly one of schema and content"
                             % (ow, name))
                if "schema" in p:
                    check_schema(doc, p["schema"], "%s parameter %s" % (ow, name), chk)
                if loc == "path" and p.get("required") is not True:
                    chk.fail("%s: path parameter %s must have required: true" % (ow, name))
                if loc == "path" and name not in templated:
                    chk.fail("%s: path parameter %s is not in the path template" % (ow, name))
                params[(name, loc)] = p
            for name in templated:
                if (name, "path") not in params:
                    chk.fail("%s: the path template names {%s} but no path parameter does"
                             % (ow, name))
            rb = o.get("requestBody")
            if rb is not None:
                rb = deref(doc, rb)
                if not isinstance(rb, dict) or "content" not in rb:
                    chk.fail("%s: requestBody needs content" % ow)
                else:
                    check_content(doc, rb["content"], ow + " requestBody", chk)


# --- in step with the code ------------------------------------------------------------------

def path_key(path):
    return re.sub(r"\{[^}]+\}", "{}", path)


def check_routes(doc, routes, chk):
    schemes = doc.get("components", {}).get("securitySchemes", {})
    bearer = {n for n, s in schemes.items()
              if s.get("type") == "http" and str(s.get("scheme", "")).lower() == "bearer"}
    documented = {}
    for path, item in doc.get("paths", {}).items():
        if not isinstance(item, dict):
            continue
        for m in METHODS:
            if isinstance(item.get(m), dict):
                documented[(m, path_key(path))] = (path, item[m])
    by_key = {}
    for rt in routes:
        key = (rt["method"], rt["key"])
        if key in by_key:
            chk.fail("server/http.c: route %s %s is in routes[] twice"
                     % (rt["method"].upper(), rt["pattern"]))
        by_key[key] = rt
    for key, rt in sorted(by_key.items()):
        shown = "%s /%s" % (rt["method"].upper(), rt["pattern"])
        if key not in documented:
            chk.fail("route %s (server/http.c, handler %s, access %s) is missing from "
                     "docs/openapi.json: add the path %s with a '%s' operation"
                     % (shown, rt["handler"], rt["access"], rt["key"].replace("{}", "{param}"),
                        rt["method"]))
            continue
        path, o = documented[key]
        ow = "%s %s" % (rt["method"].upper(), path)
        sec = effective_security(doc, o)
        uses_bearer = any(isinstance(r, dict) and any(n in bearer for n in r) for r in sec)
        anonymous_ok = any(isinstance(r, dict) and not r for r in sec) or not sec
        if rt["access"] == "public":
            if not anonymous_ok or uses_bearer:
                chk.fail("%s: the route is ROUTE_PUBLIC but the document requires a token "
                         "(give the operation 'security: []')" % ow)
        else:
            if not uses_bearer or anonymous_ok:
                chk.fail("%s: the route is ROUTE_%s (bearer token required) but the document "
                         "does not require bearerAuth for it" % (ow, rt["access"].upper()))
            if "401" not in o.get("responses", {}):
                chk.fail("%s: a route that needs a token must document 401" % ow)
        access = o.get("x-jazari-access")
        if access != rt["access"]:
            chk.fail("%s: x-jazari-access is %r but server/http.c says ROUTE_%s"
                     % (ow, access, rt["access"].upper()))
        if rt["access"] == "admin" and "403" not in o.get("responses", {}):
            chk.fail("%s: an admin route must document 403" % ow)
        handler = o.get("x-jazari-handler")
        if handler != rt["handler"]:
            chk.fail("%s: x-jazari-handler is %r but server/http.c routes it to %s"
                     % (ow, handler, rt["handler"]))
        if rt["takes_body"]:
            if "requestBody" not in o:
                chk.fail("%s: the route reads a JSON body but the document has no requestBody"
                         % ow)
            if "413" not in o.get("responses", {}):
                chk.fail("%s: the route reads a JSON body, so it must document 413" % ow)
        elif "requestBody" in o:
            chk.fail("%s: the document has a requestBody but the route does not read one" % ow)
    for key, (path, o) in sorted(documented.items()):
        if key in by_key and o.get("x-jazari-planned"):
            chk.note("%s %s is routed now: drop its \"x-jazari-planned\" in docs/openapi.json"
                     % (key[0].upper(), path))
        elif key not in by_key and o.get("x-jazari-planned"):
            chk.note("%s %s is documented ahead of its route (x-jazari-planned)"
                     % (key[0].upper(), path))
        elif key not in by_key:
            chk.fail("%s %s is documented in docs/openapi.json but server/http.c routes[] has "
                     "no such route (mark it \"x-jazari-planned\": true if its code is coming)"
                     % (key[0].upper(), path))


# --- the query parameters each route accepts (server/http_query.c) -------------------------

def read_query_table(query_c, chk):
    """{(method, key): (pattern, [params])} from http_query.c's query_table[]."""
    text = read_source(query_c, chk)
    if text is None:
        return {}
    m = re.search(r"\bquery_table\s*\[\s*\]\s*=\s*\{(.*?)\n\s*\}\s*;", text, re.S)
    if not m:
        chk.fail("%s: cannot find the 'query_table[] = { ... };' table" % query_c)
        return {}
    table = {}
    entries = len(re.findall(r"\{\s*EVHTTP_REQ_", m.group(1)))
    found = 0
    for qm in QUERY_RE.finditer(m.group(1)):
        found += 1
        method, pattern, plist = qm.groups()
        names = re.findall(r'"([^"]*)"', plist)
        if not re.search(r"\bNULL\s*$", plist.strip()):
            chk.fail("%s: the entry for %s %s must end its list with NULL"
                     % (query_c, method, pattern))
        key = (method.lower(), pattern_key(pattern))
        if key in table:
            chk.fail("%s: %s %s has two entries" % (query_c, method, pattern))
        if len(set(names)) != len(names):
            chk.fail("%s: %s %s names a parameter twice" % (query_c, method, pattern))
        table[key] = (pattern, names)
    if found != entries:
        chk.fail("%s: query_table[] has %d entries but only %d match the form "
                 "{EVHTTP_REQ_X, \"pattern\", {\"a\", ..., NULL}}" % (query_c, entries, found))
    return table


def query_params(doc, path, item, o):
    names = set()
    for p in list(item.get("parameters", [])) + list(o.get("parameters", [])):
        p = deref(doc, p)
        if isinstance(p, dict) and p.get("in") == "query" and isinstance(p.get("name"), str):
            names.add(p["name"])
    return names


def check_query_table(doc, routes, table, chk):
    documented = {}
    for path, item in doc.get("paths", {}).items():
        if not isinstance(item, dict):
            continue
        for m in METHODS:
            if isinstance(item.get(m), dict):
                documented[(m, path_key(path))] = (path, item, item[m])
    routed = {(rt["method"], rt["key"]): rt for rt in routes}
    wanted = set(routed) | {k for k, (_, _, o) in documented.items()
                            if o.get("x-jazari-planned")}
    for key in sorted(wanted):
        shown = "%s %s" % (key[0].upper(), key[1])
        if key not in table:
            chk.fail("server/http_query.c: no entry for %s: add {EVHTTP_REQ_%s, \"%s\", "
                     "{...the query parameters docs/openapi.json gives it..., NULL}} "
                     "(without one jazarid accepts any parameter there)"
                     % (shown, key[0].upper(),
                        routed[key]["pattern"] if key in routed else key[1].lstrip("/")
                        .replace("{}", "*")))
            continue
        if key not in documented:
            continue  # check_routes reports it
        path, item, o = documented[key]
        spec = query_params(doc, path, item, o)
        code = set(table[key][1])
        if spec != code:
            chk.fail("%s %s: docs/openapi.json documents the query parameters %s but "
                     "server/http_query.c accepts %s" % (key[0].upper(), path,
                                                         sorted(spec) or "none",
                                                         sorted(code) or "none"))
    for key in sorted(set(table) - wanted):
        chk.fail("server/http_query.c: the entry for %s %s matches no route of server/http.c "
                 "and no planned operation of docs/openapi.json" % (key[0].upper(),
                                                                     table[key][0] or "/"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=os.path.normpath(os.path.join(here, "..", "..", "..")),
                    help="the source tree (holding server/http.c and docs/openapi.json)")
    args = ap.parse_args()
    spec_path = os.path.join(args.source, "docs", "openapi.json")
    http_c = os.path.join(args.source, "server", "http.c")
    query_c = os.path.join(args.source, "server", "http_query.c")
    chk = Checker()
    try:
        with open(spec_path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print("FAIL: cannot parse %s: %s" % (spec_path, e))
        return 1
    check_structure(doc, chk)
    routes = read_routes(http_c, chk)
    if isinstance(doc, dict) and isinstance(doc.get("paths"), dict):
        check_routes(doc, routes, chk)
        check_query_table(doc, routes, read_query_table(query_c, chk), chk)
    for n in chk.notes:
        print("note: " + n)
    if chk.errors:
        print("FAIL: %s is not in step with %s (%d problem%s):"
              % (spec_path, http_c, len(chk.errors), "" if len(chk.errors) == 1 else "s"))
        for e in chk.errors:
            print("  - " + e)
        return 1
    nops = sum(1 for item in doc["paths"].values() for m in METHODS if m in item)
    print("ok: %s documents all %d routes of %s and their query parameters (%d paths, %d "
          "operations)" % (spec_path, len(routes), http_c, len(doc["paths"]), nops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
