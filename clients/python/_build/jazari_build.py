"""A minimal PEP 517 / PEP 660 build backend for the jazari package, standard library only.

pip runs it from this folder (pyproject.toml: backend-path), so `pip install clients/python`
works offline: nothing has to be downloaded into the isolated build environment. It builds a
pure-Python wheel of the packages named in [tool.jazari-build] (every .py file and py.typed), an
sdist, and an editable wheel (a .pth file pointing at this source tree) for `pip install -e`."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import time
import tomllib
import zipfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "py3-none-any"


def _project() -> dict[str, Any]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _dist_name(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def _metadata() -> bytes:
    data = _project()
    p = data["project"]
    lines = ["Metadata-Version: 2.1", "Name: %s" % p["name"], "Version: %s" % p["version"]]
    if p.get("description"):
        lines.append("Summary: %s" % p["description"])
    if p.get("requires-python"):
        lines.append("Requires-Python: %s" % p["requires-python"])
    for c in p.get("classifiers", []):
        lines.append("Classifier: %s" % c)
    for d in p.get("dependencies", []):
        lines.append("Requires-Dist: %s" % d)
    body = ""
    readme = p.get("readme")
    if readme and os.path.exists(os.path.join(ROOT, readme)):
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = f.read()
    return ("\n".join(lines) + "\n\n" + body).encode("utf-8")


def _wheel_file() -> bytes:
    return ("Wheel-Version: 1.0\nGenerator: jazari_build\nRoot-Is-Purelib: true\nTag: %s\n" %
            TAG).encode()


def _package_files() -> list[tuple[str, str]]:
    """(path in the wheel, path on disk) of every file to ship, sorted."""
    out = []
    for pkg in _project().get("tool", {}).get("jazari-build", {}).get("packages", []):
        base = os.path.join(ROOT, pkg)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for fn in sorted(filenames):
                if fn.endswith(".py") or fn == "py.typed":
                    full = os.path.join(dirpath, fn)
                    out.append((os.path.relpath(full, ROOT).replace(os.sep, "/"), full))
    return out


def _names() -> tuple[str, str]:
    p = _project()["project"]
    return _dist_name(p["name"]), p["version"]


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (arcname, digest, len(data))


def _write_wheel(directory: str, files: list[tuple[str, bytes]]) -> str:
    name, version = _names()
    distinfo = "%s-%s.dist-info" % (name, version)
    files = files + [("%s/METADATA" % distinfo, _metadata()),
                     ("%s/WHEEL" % distinfo, _wheel_file())]
    record = [_record_line(a, d) for a, d in files] + ["%s/RECORD,," % distinfo]
    files.append(("%s/RECORD" % distinfo, ("\n".join(record) + "\n").encode()))
    filename = "%s-%s-%s.whl" % (name, version, TAG)
    # Fixed timestamps: the same tree gives the same wheel.
    stamp = (1980, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files:
            info = zipfile.ZipInfo(arcname, stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return filename


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: dict[str, Any] | None = None) -> list[str]:
    return []


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: dict[str, Any] | None = None) -> str:
    name, version = _names()
    distinfo = "%s-%s.dist-info" % (name, version)
    os.makedirs(os.path.join(metadata_directory, distinfo), exist_ok=True)
    with open(os.path.join(metadata_directory, distinfo, "METADATA"), "wb") as f:
        f.write(_metadata())
    with open(os.path.join(metadata_directory, distinfo, "WHEEL"), "wb") as f:
        f.write(_wheel_file())
    return distinfo


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                metadata_directory: str | None = None) -> str:
    files = []
    for arcname, path in _package_files():
        with open(path, "rb") as f:
            files.append((arcname, f.read()))
    return _write_wheel(wheel_directory, files)


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    name, _ = _names()
    return _write_wheel(wheel_directory, [("_%s_editable.pth" % name, (ROOT + "\n").encode())])


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    name, version = _names()
    base = "%s-%s" % (name, version)
    filename = base + ".tar.gz"
    extra = ["pyproject.toml", "README.md", "_build/jazari_build.py"]
    paths = [p for p in extra if os.path.exists(os.path.join(ROOT, p))]
    paths += [a for a, _ in _package_files()]
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as t:
        for rel in paths:
            with open(os.path.join(ROOT, rel), "rb") as f:
                data = f.read()
            info = tarfile.TarInfo("%s/%s" % (base, rel))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            t.addfile(info, io.BytesIO(data))
        pkg_info = _metadata()
        info = tarfile.TarInfo("%s/PKG-INFO" % base)
        info.size, info.mode, info.mtime = len(pkg_info), 0o644, int(time.time())
        t.addfile(info, io.BytesIO(pkg_info))
    return filename
