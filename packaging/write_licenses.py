"""The licences folder of a frozen build: a notice and every bundled licence text.

    python packaging/write_licenses.py DEST [--no-gpl]

Writes ``DEST/NOTICE.txt`` (from packaging/licenses/NOTICE.txt, with this build's
versions), the GNU licence texts (GPL 2 and 3, LGPL 2.1 and 3), Python's licence, and
one folder per bundled Python distribution (its dist-info licence files, or what its
metadata declares), found from the modules PyInstaller's analysis bundled (build.spec).
Why a GPL notice: docs/installers.md, "Licensing".
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import shutil
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LICENSE_FILE = re.compile(r"(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.IGNORECASE)

GPL_WITH_X264 = """\
PyAV's FFmpeg is linked with x264 (libx264-*.so), which is licensed under the GNU GPL
v2 or later (GPL-2.0.txt). Linking it makes this build, taken as a whole, a work
covered by the GPL v2 or later. Desktop Call's own code stays MIT (compatible with the
GPL); everything else keeps its licence. You may copy and redistribute this build
under the terms of the GPL v2 or later; the source of every part is available as
described below. A build without any GPL component exists: `build.spec -- --no-gpl`
(it sends VP8 video only)."""

GPL_WITHOUT = """\
This build was made with --no-gpl: x264 and x265 are replaced by empty stub libraries
(see below), so no GPL-licensed library is included (PyInstaller's bootloader is GPL with
an exception that allows any program) and the LGPL and permissive licences below apply.
It sends VP8 video only (H.264 can still be received)."""

X264 = """\
- x264 (libx264-*.so, H.264 encoder, shipped in the PyAV wheel) - GNU GPL v2 or later
  (GPL-2.0.txt). Source: https://code.videolan.org/videolan/x264 (the revision pinned
  by pyav-ffmpeg for PyAV @AV@)."""


def requirement_closure(root: str = "desktop-call") -> list[metadata.Distribution]:
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = re.split(r"[\s;<>=!~\[(]", todo.pop(), maxsplit=1)[0]
        key = name.lower().replace("_", "-")
        if not key or key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for requirement in dist.requires or []:
            marker = requirement.split(";", 1)[1] if ";" in requirement else ""
            if "extra ==" in marker:
                continue
            if marker and not _marker_holds(marker):
                continue
            todo.append(requirement)
    return [d for k, d in sorted(seen.items()) if k != root]


def _marker_holds(marker: str) -> bool:
    try:
        from packaging.markers import Marker
    except ImportError:  # without 'packaging': keep it (a licence too many is harmless)
        return True
    return Marker(marker.strip()).evaluate()


def copy_licenses(dist: metadata.Distribution, dest: Path) -> int:
    """The licence files in the distribution's dist-info, and those shipped inside the
    package itself (livekit's native library carries its third-party notices there)."""
    count = 0
    for file in dist.files or []:
        parts = Path(str(file)).parts
        name = parts[-1] if parts else ""
        in_info = bool(parts) and parts[0].endswith(".dist-info")
        if not LICENSE_FILE.search(name) or name.endswith((".py", ".pyc", ".pyi")):
            continue
        if not in_info and not re.match(r"(LICEN[CS]E|COPYING|NOTICE)", name, re.IGNORECASE):
            continue
        source = Path(dist.locate_file(file))
        if source.is_file():
            dest.mkdir(parents=True, exist_ok=True)
            target = name if in_info else "_".join(parts)  # e.g. livekit_rtc_resources_…
            shutil.copy2(source, dest / target)
            count += 1
    return count


def write_metadata_license(dist: metadata.Distribution, dest: Path) -> None:
    """For a distribution that ships no licence file (PySide6, shiboken6): what its
    metadata declares, and which text in this folder applies."""
    meta = dist.metadata
    declared = meta.get("License-Expression") or meta.get("License") or ""
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License")]
    lines = [f"{meta['Name']} {dist.version}", f"Licence (from its metadata): {declared}"]
    lines += [f"  {c}" for c in classifiers]
    if "LGPL" in declared or any("LGPL" in c for c in classifiers):
        lines.append("Used here under the GNU LGPL v3: ../LGPL-3.0.txt and ../GPL-3.0.txt.")
    if meta.get("Home-page"):
        lines.append(f"Source: {meta['Home-page']}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "LICENSE.txt").write_text("\n".join(lines) + "\n")


def stub_paragraph(no_gpl: bool) -> str:
    sys.path.insert(0, str(HERE))
    import slim

    items = {**slim.STUBBED, **(slim.STUBBED_NO_GPL if no_gpl else {})}
    lines = [
        "On Linux these libraries, linked but never called by a call, are replaced by stub",
        "libraries of the same name that contain no code of the original (packaging/slim.py):",
    ]
    for pattern, why in items.items():
        name = re.sub(r"[-.]?\*.*$", "", pattern)
        lines.append(f"- {name}: {why}")
    lines.append("On Windows and macOS the PyAV and PySide6 libraries are shipped unchanged.")
    return "\n".join(lines)


def bundled_distributions(modules: set[str]) -> list[metadata.Distribution]:
    """The installed distributions that provide these top-level modules."""
    providers = metadata.packages_distributions()
    names = {dist for module in modules for dist in providers.get(module, [])}
    names.discard("desktop-call")  # its own MIT licence is written separately
    found = {}
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[dist.metadata["Name"].lower()] = dist
    return [found[k] for k in sorted(found)]


def write(dest: Path, no_gpl: bool = False, modules: set[str] | None = None) -> Path:
    """The licences folder; ``modules``: the top-level modules the build bundles (from
    PyInstaller's analysis), else desktop-call's installed requirements."""
    if dest.exists():
        shutil.rmtree(dest)  # nothing left from an earlier build
    dest.mkdir(parents=True)
    for text in ("GPL-2.0.txt", "GPL-3.0.txt", "LGPL-2.1.txt", "LGPL-3.0.txt"):
        shutil.copy2(HERE / "licenses" / text, dest / text)
    places = [Path(sysconfig.get_paths()["stdlib"]), Path(sys.base_prefix)]  # POSIX, Windows
    python_license = next(
        (p / "LICENSE.txt" for p in places if (p / "LICENSE.txt").is_file()), Path()
    )
    if python_license.is_file():
        (dest / "python").mkdir(exist_ok=True)
        shutil.copy2(python_license, dest / "python" / "LICENSE.txt")
    (dest / "desktop-call").mkdir(exist_ok=True)
    (dest / "desktop-call" / "LICENSE.txt").write_text(_mit_text())
    versions = {}
    dists = bundled_distributions(modules) if modules else requirement_closure()
    for dist in [*dists, metadata.distribution("pyinstaller")]:
        name = dist.metadata["Name"]
        versions[name.lower()] = dist.version
        if not copy_licenses(dist, dest / name.lower()):
            write_metadata_license(dist, dest / name.lower())
    import av  # the versions the notice names
    import PySide6.QtCore

    gpl = "NO GPL COMPONENT: " if no_gpl else ""
    text = (HERE / "licenses" / "NOTICE.txt").read_text()
    if no_gpl:
        text = text.replace(
            "GPL: THIS BUILD AS A WHOLE IS DISTRIBUTED UNDER THE GNU GPL, VERSION 2 OR LATER\n"
            "-------------------------------------------------------------------------------",
            f"{gpl}LGPL AND PERMISSIVE LICENCES ONLY\n" + "-" * 79,
        )
    replacements = {
        "@VERSION@": _version(),
        "@GPL_PARAGRAPH@": GPL_WITHOUT if no_gpl else GPL_WITH_X264,
        "@X264_LINE@": "" if no_gpl else X264,
        "@STUBS_PARAGRAPH@": stub_paragraph(no_gpl),
        "@PYTHON@": sys.version.split()[0],
        "@QT@": PySide6.QtCore.qVersion(),
        "@PYSIDE@": versions.get("pyside6", "?"),
        "@AV@": av.__version__,
        "@FFMPEG@": av.ffmpeg_version_info,
        "@QT_FFMPEG@": "7.1",
    }
    for key, value in replacements.items():
        text = text.replace(key, value)
    (dest / "NOTICE.txt").write_text(re.sub(r"\n{3,}", "\n\n", text))
    return dest


def _version() -> str:
    sys.path.insert(0, str(ROOT))
    from desktop_call import __version__

    return __version__


def _mit_text() -> str:
    return """MIT License

Copyright (c) the Desktop Call authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software
without restriction, including without limitation the rights to use, copy, modify,
merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
permit persons to whom the Software is furnished to do so, subject to the following
conditions:

The above copyright notice and this permission notice shall be included in all copies
or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A
PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT
HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF
CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE
OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--no-gpl", action="store_true")
    args = parser.parse_args()
    write(args.dest, args.no_gpl)
    print(f"wrote {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
