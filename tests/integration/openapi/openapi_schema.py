"""A validator for the part of JSON Schema that docs/openapi.json uses (OpenAPI 3.0 Schema
Objects): type (a name, or a list of names with "null"), nullable, enum, properties, required,
additionalProperties, maxProperties, items, minItems, maxItems, allOf, anyOf, oneOf, $ref to
#/components/..., minimum, maximum, minLength, maxLength, pattern and format date-time. Standard
library only, so that the test runs wherever python3 does.

strict=True closes objects that list properties but say nothing of additionalProperties: a live
answer with a field the document does not describe is then an error. Objects that may hold
anything (a job's params, its metrics) say "additionalProperties": true or give a schema."""
import re

DATE_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
KNOWN = {"type", "nullable", "enum", "properties", "required", "additionalProperties",
         "maxProperties", "minProperties", "items", "minItems", "maxItems", "allOf", "anyOf",
         "oneOf", "$ref", "minimum", "maximum", "minLength", "maxLength", "pattern", "format",
         "description", "example", "default", "readOnly", "writeOnly", "title", "deprecated"}


class Validator:
    def __init__(self, doc, strict=True):
        self.doc = doc
        self.strict = strict

    def resolve(self, schema):
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/") or seen > 32:
                raise ValueError("cannot resolve $ref %r" % ref)
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
            seen += 1
        return schema

    def errors(self, schema, value, where="$"):
        """Every way value fails schema, as 'where: why' lines (empty: it is valid)."""
        out = []
        self._check(schema, value, where, out)
        return out

    def valid(self, schema, value):
        return not self.errors(schema, value)

    def _check(self, schema, x, w, out):
        s = self.resolve(schema)
        if s is True or s == {}:
            return
        if s is False:
            out.append("%s: no value is allowed here" % w)
            return
        unknown = set(k for k in s if not k.startswith("x-")) - KNOWN
        if unknown:  # a keyword this validator would silently ignore
            out.append("%s: schema keywords %s are not supported by the validator"
                       % (w, sorted(unknown)))
        t = s.get("type")
        types = t if isinstance(t, list) else [t] if t else []
        if x is None:
            if s.get("nullable") or "null" in types:
                return
            if types:
                out.append("%s: null, expected %s" % (w, "/".join(types)))
                return
        elif types and not any(self._is(tn, x) for tn in types):
            out.append("%s: %s, expected %s" % (w, kind(x), "/".join(types)))
            return
        if "enum" in s and x not in s["enum"]:
            out.append("%s: %r is not one of %s" % (w, x, s["enum"]))
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            if "minimum" in s and x < s["minimum"]:
                out.append("%s: %r is below the minimum %r" % (w, x, s["minimum"]))
            if "maximum" in s and x > s["maximum"]:
                out.append("%s: %r is above the maximum %r" % (w, x, s["maximum"]))
        if isinstance(x, str):
            if "minLength" in s and len(x) < s["minLength"]:
                out.append("%s: shorter than %d characters" % (w, s["minLength"]))
            if "maxLength" in s and len(x) > s["maxLength"]:
                out.append("%s: longer than %d characters" % (w, s["maxLength"]))
            if "pattern" in s and not re.search(s["pattern"], x):
                out.append("%s: %r does not match %r" % (w, x, s["pattern"]))
            if s.get("format") == "date-time" and not DATE_TIME_RE.match(x):
                out.append("%s: %r is not an RFC 3339 date-time" % (w, x))
        if isinstance(x, list):
            if "maxItems" in s and len(x) > s["maxItems"]:
                out.append("%s: more than %d items" % (w, s["maxItems"]))
            if "minItems" in s and len(x) < s["minItems"]:
                out.append("%s: fewer than %d items" % (w, s["minItems"]))
            if "items" in s:
                for i, v in enumerate(x):
                    self._check(s["items"], v, "%s[%d]" % (w, i), out)
        if isinstance(x, dict):
            props = s.get("properties", {})
            for name in s.get("required", []):
                if name not in x:
                    out.append("%s: the required field %r is missing" % (w, name))
            if "maxProperties" in s and len(x) > s["maxProperties"]:
                out.append("%s: more than %d fields" % (w, s["maxProperties"]))
            extra = s.get("additionalProperties")
            if extra is None and self.strict and props:
                extra = False
            for k, v in x.items():
                if k in props:
                    self._check(props[k], v, "%s.%s" % (w, k), out)
                elif extra is False:
                    out.append("%s: the field %r is not in the document" % (w, k))
                elif isinstance(extra, dict):
                    self._check(extra, v, "%s.%s" % (w, k), out)
        for sub in s.get("allOf", []):
            self._check(sub, x, w, out)
        if "anyOf" in s:
            tries = [self.errors(sub, x, w) for sub in s["anyOf"]]
            if all(tries):
                out.append("%s: matches none of anyOf: %s" % (w, best(tries)))
        if "oneOf" in s:
            tries = [self.errors(sub, x, w) for sub in s["oneOf"]]
            n = sum(1 for e in tries if not e)
            if n == 0:
                out.append("%s: matches none of oneOf: %s" % (w, best(tries)))
            elif n > 1:
                out.append("%s: matches %d of oneOf (exactly one must)" % (w, n))

    @staticmethod
    def _is(t, x):
        if t == "null":
            return x is None
        if t == "boolean":
            return isinstance(x, bool)
        if t == "integer":
            return isinstance(x, int) and not isinstance(x, bool)
        if t == "number":
            return isinstance(x, (int, float)) and not isinstance(x, bool)
        if t == "string":
            return isinstance(x, str)
        if t == "array":
            return isinstance(x, list)
        if t == "object":
            return isinstance(x, dict)
        return False


def kind(x):
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(x), type(x).__name__)


def best(tries):
    """The errors of the alternative that came closest (fewest errors)."""
    return "; ".join(min(tries, key=len)[:4])


if __name__ == "__main__":  # a self-test of the validator itself
    doc = {"components": {"schemas": {
        "A": {"type": "object", "required": ["a"], "properties": {
            "a": {"type": "integer", "minimum": 1}, "b": {"type": "string", "nullable": True},
            "c": {"type": ["string", "null"]}, "d": {"$ref": "#/components/schemas/E"}}},
        "E": {"type": "string", "enum": ["x", "y"]}}}}
    v = Validator(doc)
    ref = {"$ref": "#/components/schemas/A"}
    assert v.valid(ref, {"a": 1, "b": None, "c": None, "d": "x"})
    assert not v.valid(ref, {"a": 0})
    assert not v.valid(ref, {"a": True})
    assert not v.valid(ref, {"b": "s"})
    assert not v.valid(ref, {"a": 1, "d": "z"})
    assert not v.valid(ref, {"a": 1, "zz": 1})  # strict
    assert Validator(doc, strict=False).valid(ref, {"a": 1, "zz": 1})
    assert v.valid({"oneOf": [{"type": "integer"}, {"type": "string"}]}, 3)
    assert not v.valid({"oneOf": [{"type": "number"}, {"type": "integer"}]}, 3)
    assert v.valid({"anyOf": [{"type": "number"}, {"type": "integer"}]}, 3)
    assert not v.valid({"type": "string", "format": "date-time"}, "yesterday")
    assert v.valid({"allOf": [ref], "nullable": True}, None)
    print("ok")
