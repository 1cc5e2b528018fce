"""What build.spec leaves out of the frozen app, and how (imported by build.spec).

A naive one-folder build of this stack is ~390 MB: every Qt plugin PyInstaller's hooks
know, Qt's translations, QtQuick/Qml (the multimedia plugin links them), ICU's full
data, PyAV's encoders for formats a call never uses. Three tools, all plain Python
over what the wheels ship, so a fresh checkout builds with no download:

- **filters** (every OS): Qt plugins by an allow-list, no translations, Python
  modules and Qt bindings the app never imports (``EXCLUDES``);
- **stub libraries** (Linux): a library that is linked but never *called* in a call
  (x265, SVT-AV1, dav1d, GnuTLS, LAME, AMR, WebP, oneVPL; QtQuick/Qml, linked by the
  multimedia plugin for one ``qobject_cast`` and a grab of QML windows) is replaced by
  a tiny library of the same SONAME exporting the same symbols and symbol versions:
  functions that return 0 (or the library's own error code at its entry points, so
  FFmpeg reports "cannot open encoder" rather than crashing), data symbols of the
  same size filled with zeros. Needs gcc and binutils (readelf), as any Linux build
  machine has;
- **ICU data** (Linux): Qt links ICU for case mapping, collation, time-zone names and
  legacy text codecs; the app needs none of ICU's 3,900 data items but the core ones.
  ``libicudata`` is rebuilt with the items Qt can reach (``ICU_KEEP``): 31 MB -> ~8 MB.

Then :func:`prune` drops every shared library no longer reachable (NEEDED) from a
Python extension module, a Qt plugin or libpython.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path, PurePosixPath

# ----------------------------------------------------------------- every OS

_QT_UNUSED = """
    Qt3DAnimation Qt3DCore Qt3DExtras Qt3DInput Qt3DLogic Qt3DRender QtAxContainer
    QtBluetooth QtCanvasPainter QtCharts QtConcurrent QtDataVisualization QtDBus
    QtDesigner QtGraphs QtGraphsWidgets QtHelp QtHttpServer QtLocation
    QtMultimediaWidgets QtNetworkAuth QtNfc QtOpenGL QtOpenGLWidgets QtPdf QtPdfWidgets
    QtPositioning QtPrintSupport QtQml QtQuick QtQuick3D QtQuickControls2 QtQuickTest
    QtQuickWidgets QtRemoteObjects QtScxml QtSensors QtSerialBus QtSerialPort
    QtSpatialAudio QtSql QtStateMachine QtSvgWidgets QtTest QtTextToSpeech QtUiTools
    QtWebChannel QtWebEngineCore QtWebEngineQuick QtWebEngineWidgets QtWebSockets
    QtWebView QtXml scripts
""".split()  # noqa: SIM905 - a list of 54 names reads better so

#: Python modules the app never imports (some are pulled in by optional imports).
EXCLUDES = [
    "tkinter",
    "_tkinter",
    "pydoc",
    "pydoc_data",
    "doctest",
    "lib2to3",
    "distutils",
    "setuptools",
    "pkg_resources",
    "pip",
    "IPython",
    "matplotlib",
    "PIL",
    "pytest",
    "hypothesis",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.testing",
    "numpy.random",  # numpy imports it lazily; nothing here uses it (2.5 MB)
    "readline",  # and with it libreadline and libtinfo
    "curses",
    # CJK legacy text codecs (0.9 MB): the app speaks UTF-8.
    "_codecs_jp",
    "_codecs_kr",
    "_codecs_cn",
    "_codecs_tw",
    "_codecs_hk",
    "_codecs_iso2022",
    "cv2",
    # Qt bindings: only QtCore, QtGui, QtWidgets, QtNetwork, QtSvg and QtMultimedia.
    *(f"PySide6.{name}" for name in _QT_UNUSED),
    "PyQt5",
    "PyQt6",
    "PySide2",
]

#: Qt plugins kept, as ``category/file-pattern`` (the rest are dropped): windows on X11
#: (offscreen for tests; Wayland desktops run it through XWayland, which saves Qt's
#: Wayland client, 2.6 MB), SVG icons, JPEG, input methods, the desktop portal (dark
#: mode, file dialogs), and QtMultimedia's FFmpeg backend (cameras, microphones,
#: speakers). macOS/Windows file names are matched too.
QT_PLUGINS_KEEP = [
    "platforms/*qxcb*",
    "platforms/*qoffscreen*",
    "platforms/*qcocoa*",
    "platforms/*qwindows*",
    "platformthemes/*qxdgdesktopportal*",
    "platforminputcontexts/*compose*",
    "platforminputcontexts/*ibus*",
    "xcbglintegrations/*",
    "imageformats/*qsvg*",
    "imageformats/*qjpeg*",
    "imageformats/*qico*",
    "iconengines/*",
    "multimedia/*ffmpeg*",
    "multimedia/*darwin*",
    "multimedia/*windows*",
    "styles/*",
]

_QT_PLUGIN = re.compile(r"(?:^|/)PySide6/(?:Qt/)?plugins/([^/]+)/([^/]+)$")


def _dest(entry) -> str:
    return str(entry[0]).replace("\\", "/")


def qt_plugin_kept(dest: str) -> bool:
    match = _QT_PLUGIN.search(dest)
    if match is None:
        return True
    path = f"{match.group(1)}/{match.group(2)}"
    return any(fnmatch.fnmatch(path, pattern) for pattern in QT_PLUGINS_KEEP)


def is_unwanted_data(dest: str) -> bool:
    """Qt translations (the app installs no QTranslator), QML, type stubs, sources."""
    return (
        bool(re.search(r"(^|/)PySide6/(Qt/)?translations/", dest))
        or bool(re.search(r"(^|/)PySide6/(Qt/)?qml/", dest))
        or dest.endswith((".pyi", ".pxd", ".pyx", ".h", ".c", ".typed"))
    )


def filter_toc(binaries, datas, log=print):
    """Drop unwanted Qt plugins and data; returns the new (binaries, datas)."""
    kept_bins, kept_datas, dropped = [], [], []
    for entry in binaries:
        (kept_bins if qt_plugin_kept(_dest(entry)) else dropped).append(entry)
    for entry in datas:
        dest = _dest(entry)
        if qt_plugin_kept(dest) and not is_unwanted_data(dest):
            kept_datas.append(entry)
        else:
            dropped.append(entry)
    log(f"slim: dropped {len(dropped)} Qt plugins, translations and data files")
    return kept_bins, kept_datas


# ----------------------------------------------------------------- Linux: the host's

#: Libraries of the host's desktop that PyInstaller would copy from the build machine:
#: left to the host, as AppImage's exclude list does. They must match the host's
#: display server, GPU drivers and sound server (a bundled libstdc++ older than the
#: one the host's Mesa needs is a classic crash), and every desktop with a window
#: system and sound has them: Qt's own requirements (docs/installers.md). Kept in the
#: build: libpython, bz2.
HOST_LIBS = [
    "libstdc++.so.*", "libgcc_s.so.*",
    "libX11.so.*", "libX11-xcb.so.*", "libXext.so.*", "libXrender.so.*", "libXrandr.so.*",
    "libXau.so.*", "libXdmcp.so.*", "libXi.so.*", "libXfixes.so.*", "libxcb*.so*",
    "libxkbcommon*.so.*", "libwayland-*.so.*", "libGL*.so*", "libEGL*.so*", "libOpenGL.so.*",
    "libdrm.so.*", "libgbm.so.*", "libfontconfig.so.*", "libfreetype.so.*", "libpng16.so.*",
    "libharfbuzz*.so.*", "libexpat.so.*", "libbrotli*.so.*", "libz.so.*",
    "libdbus-1.so.*", "libsystemd.so.*", "libglib-2.0.so.*", "libgthread-2.0.so.*",
    "libgobject-2.0.so.*", "libgio-2.0.so.*", "libgmodule-2.0.so.*", "libpcre2-8.so.*",
    "libpulse*.so*", "libsndfile.so.*", "libFLAC.so.*", "libvorbis*.so.*", "libogg.so.*",
    "libopus.so.*", "libmpg123.so.*", "libmp3lame.so.*", "libasyncns.so.*",
    "libgcrypt.so.*", "libgpg-error.so.*", "libcap.so.*", "liblz4.so.*", "libzstd.so.*",
    "liblzma.so.*", "libuuid.so.*", "libmd.so.*", "libbsd.so.*", "libselinux.so.*",
    "libmount.so.*", "libblkid.so.*",
    # OpenSSL 3 (Python's ssl and hashlib) and Kerberos (linked by QtNetwork): on every
    # system new enough for this build's glibc (CI builds on Ubuntu 22.04: OpenSSL 3.0).
    "libssl.so.*", "libcrypto.so.*", "libgssapi_krb5.so.*", "libkrb5*.so.*",
    "libk5crypto.so.*", "libcom_err.so.*", "libkeyutils.so.*", "libffi.so.*",
]  # fmt: skip
_HOST_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/local/lib/")


def leave_host_libs(binaries, log=print):
    """Drop the ``HOST_LIBS`` that PyInstaller took from the build machine's system."""
    kept, left = [], []
    for entry in binaries:
        src = str(entry[1] or "")
        name = PurePosixPath(_dest(entry)).name
        if src.startswith(_HOST_DIRS) and any(fnmatch.fnmatch(name, p) for p in HOST_LIBS):
            left.append(name)
        else:
            kept.append(entry)
    if left:
        log(f"slim: left {len(left)} libraries to the host: {' '.join(sorted(left))}")
    return kept


def drop_dangling_symlinks(toc, present: set[str], log=print):
    """PyInstaller links top-level names to libraries in sub-folders: drop the links
    whose library is gone (pruned or left to the host)."""
    kept, dropped = [], []
    for entry in toc:
        if entry[2] == "SYMLINK":
            target = str(PurePosixPath(_dest(entry)).parent / str(entry[1]).replace("\\", "/"))
            target = os.path.normpath(target).replace("\\", "/")
            if target not in present:
                dropped.append(_dest(entry))
                continue
        kept.append(entry)
    if dropped:
        log(f"slim: dropped {len(dropped)} links to removed libraries")
    return kept


# ----------------------------------------------------------------- Linux: stubs

OPENBLAS = "libscipy_openblas*.so*"

#: Libraries replaced by stubs (fnmatch on the file name), and why.
STUBBED = {
    # PyAV's FFmpeg links every encoder its wheel was built with; a call uses libvpx
    # (VP8), libx264 (H.264), Opus and FFmpeg's own decoders.
    "libx265-*": "H.265 encoder (GPL), never used by WebRTC here",
    "libSvtAv1Enc-*": "AV1 encoder, never used",
    "libdav1d-*": "AV1 decoder, never used",
    "libmp3lame-*": "MP3 encoder, never used",
    "libopencore-amr*": "AMR codecs, never used",
    "libwebp-*": "WebP codec, never used",
    "libwebpmux-*": "WebP muxer, never used",
    "libvpl-*": "Intel QSV dispatcher, never used (software codecs only)",
    "libgnutls-*": "TLS for FFmpeg's network protocols (https://, rtmps://), never used",
    "libasound-*": "ALSA for FFmpeg's alsa device (audio comes through QtMultimedia)",
    # Qt's own FFmpeg demuxers and muxers: QMediaPlayer and QMediaRecorder, which this
    # app does not use (capture from cameras, microphones and screens does not demux).
    "libavformat.so.*": "Qt's FFmpeg container formats (media player/recorder), never used",
    # NumPy's OpenBLAS: CBLAS for dot/matmul by packaging/minblas.c, no LAPACK.
    OPENBLAS: "OpenBLAS (25 MB): NumPy's dot/matmul by minblas.c, no numpy.linalg",
    # Qt's FFmpeg multimedia plugin links QtQuick for QQuickWindow::grabWindow (screen
    # capture of QML windows) and a qobject_cast; this app has no QML window.
    "libQt6Quick.so.6": "QtQuick, linked by the multimedia plugin, never called",
    "libQt6Qml.so.6": "QtQml, linked by the multimedia plugin, never called",
}

#: Extra stubs when building without any GPL component (``--no-gpl``): no H.264 sending.
STUBBED_NO_GPL = {"libx264-*": "H.264 encoder (GPL): a --no-gpl build sends VP8 only"}

#: Return values of the libraries' entry points: their own "failed" values, so a caller
#: that tries reports an error. Every other stub function returns 0 (or NULL).
STUB_RETURNS = {
    "svt_av1_enc_init_handle": "(long)(int)0x80001000",  # EB_ErrorInsufficientResources
    "dav1d_open": "-12",  # DAV1D_ERR(ENOMEM)
    "gnutls_global_init": "-59",  # GNUTLS_E_INTERNAL_ERROR
    "gnutls_init": "-59",
    "gnutls_certificate_allocate_credentials": "-59",
    "x264_param_default_preset": "-1",
    "snd_pcm_open": "-19",  # -ENODEV
    "avformat_open_input": "-1",  # AVERROR(EPERM): "cannot open"
    "avformat_write_header": "-1",
    "avio_open2": "-1",
}

_DYNSYM = re.compile(
    r"^\s*\d+:\s+([0-9a-f]+)\s+(\d+|0x[0-9a-f]+)\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+(\S+)"
)


_LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def dynamic_symbols(path: str | os.PathLike) -> tuple[list[tuple], list[str]]:
    """Defined dynamic symbols (name, version, type, size) and version definitions."""
    symbols = []
    for line in _run("readelf", "--dyn-syms", "-W", str(path)).splitlines():
        match = _DYNSYM.match(line)
        if not match:
            continue
        _value, size, kind, bind, ndx, name = match.groups()
        if ndx in ("UND", "ABS") or bind not in ("GLOBAL", "WEAK"):
            continue
        if kind not in ("FUNC", "OBJECT", "IFUNC", "NOTYPE"):
            continue
        if name.split("@")[0] in _LINKER_SYMBOLS:
            continue
        if "@@" in name:
            name, version = name.split("@@", 1)
        elif "@" in name:
            continue  # a non-default (old) version: nobody links to it anew
        else:
            version = None
        symbols.append((name, version, kind, int(size, 0)))
    versions = re.findall(r"Name:\s+(\S+)", _section(_run("readelf", "-V", "-W", str(path))))
    return symbols, versions


def _section(text: str) -> str:
    """The .gnu.version_d part of ``readelf -V``: the versions the library defines."""
    start = text.find("Version definition section")
    if start < 0:
        return ""
    end = text.find("Version needs section", start)
    return text[start : end if end > 0 else None]


def soname(path: str | os.PathLike) -> str | None:
    match = re.search(r"\(SONAME\)\s+Library soname: \[(.+?)\]", _run("readelf", "-d", str(path)))
    return match.group(1) if match else None


def needed(path: str | os.PathLike) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", _run("readelf", "-d", str(path)))


def undefined_symbols(path: str | os.PathLike) -> set[str]:
    names = set()
    for line in _run("readelf", "--dyn-syms", "-W", str(path)).splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[6] == "UND":
            names.add(parts[7].split("@")[0])
    return names


def build_stub(original: Path, out: Path, wanted: set[str] | None = None) -> Path:
    """A library with the SONAME, symbols and symbol versions of ``original``, no code.

    With ``wanted``, only those symbols (what the rest of the bundle imports) and
    every version node, so the dynamic linker's version checks still pass.
    """
    symbols, versions = dynamic_symbols(original)
    if wanted is not None:
        symbols = [s for s in symbols if s[0] in wanted]
    base_version = versions[0] if versions else None  # the file's own name entry
    named_versions = [v for v in versions[1:] if v != base_version] if versions else []
    lines = ["/* Generated by packaging/slim.py: a stub of " + original.name + " */"]
    by_version: dict[str | None, list[str]] = {}
    for index, (name, version, kind, size) in enumerate(symbols):
        by_version.setdefault(version, []).append(name)
        c_name = f"stub_{index}"
        label = name.replace("\\", "\\\\").replace('"', '\\"')
        if kind == "OBJECT":
            lines.append(
                f'extern char {c_name}[{max(size, 1)}] __asm__("{label}");\n'
                f"__attribute__((aligned(64))) char {c_name}[{max(size, 1)}];"
            )
        else:
            value = STUB_RETURNS.get(name, "0")
            lines.append(
                f'long {c_name}(void) __asm__("{label}");\n'
                f"long {c_name}(void) {{ return {value}; }}"
            )
    out.mkdir(parents=True, exist_ok=True)
    name = soname(original) or original.name
    source = out / f"{name}.c"
    source.write_text("\n".join(lines) + "\n")
    script = out / f"{name}.map"
    if named_versions:
        blocks = []
        for version in named_versions:
            names = by_version.get(version, [])
            body = "".join(f'  "{n}";\n' for n in names)
            blocks.append(f"{version} {{\n global:\n{body}}};\n" if body else f"{version} {{ }};\n")
        # Unversioned exports (rare beside versioned ones) go to the first version:
        # a consumer that asks for no version binds to it all the same.
        unversioned = by_version.get(None, [])
        if unversioned:
            body = "".join(f'  "{n}";\n' for n in unversioned)
            first = named_versions[0]
            blocks[0] = blocks[0].replace(f"{first} {{ }};\n", f"{first} {{\n global:\n}};\n")
            blocks[0] = blocks[0].replace(" global:\n", " global:\n" + body, 1)
        script.write_text("".join(blocks))
    else:
        script.write_text("{ global: *; };\n")
    target = out / name
    subprocess.run(
        [
            os.environ.get("CC", "gcc"),
            "-shared",
            "-fPIC",
            "-O1",
            "-nostdlib",
            "-fno-asynchronous-unwind-tables",
            f"-Wl,-soname,{name}",
            f"-Wl,--version-script={script}",
            "-Wl,--hash-style=both",
            "-s",
            "-o",
            str(target),
            str(source),
        ],
        check=True,
    )
    return target


def stub_binaries(binaries, work: Path, no_gpl: bool = False, log=print):
    """Replace the ``STUBBED`` libraries in a PyInstaller TOC by stubs built in ``work``."""
    patterns = {**STUBBED, **(STUBBED_NO_GPL if no_gpl else {})}

    def stubbed(entry) -> str | None:
        file = PurePosixPath(_dest(entry)).name
        return next((why for pat, why in patterns.items() if fnmatch.fnmatch(file, pat)), None)

    wanted: set[str] = set()
    for entry in binaries:
        if entry[1] and stubbed(entry) is None and Path(entry[1]).is_file():
            with contextlib.suppress(subprocess.CalledProcessError):
                wanted |= undefined_symbols(entry[1])
    result, saved = [], 0
    for entry in binaries:
        dest, src, kind = entry[0], entry[1], entry[2]
        file = PurePosixPath(_dest(entry)).name
        reason = stubbed(entry)
        if reason is None or not src:
            result.append(entry)
            continue
        if fnmatch.fnmatch(file, OPENBLAS):
            stub = build_minblas(Path(src), work / "minblas", wanted)
        else:
            stub = build_stub(Path(src), work / "stubs", wanted)
        saved += Path(src).stat().st_size - stub.stat().st_size
        log(f"slim: stub {file} ({reason})")
        result.append((dest, str(stub), kind))
    log(f"slim: stubs save {saved / 1e6:.1f} MB")
    return result


# ----------------------------------------------------------------- Linux: mini BLAS

#: NumPy's wheels link OpenBLAS (25 MB, plus gfortran's runtime): replaced by
#: packaging/minblas.c, the CBLAS routines NumPy's core calls, in plain C.
MINBLAS_ROUTINES = [
    f"cblas_{p}{name}" for p in "sdcz" for name in ("gemm", "gemv", "syrk", "axpy")
] + ["cblas_sdot", "cblas_ddot", "cblas_cdotu_sub", "cblas_cdotc_sub", "cblas_zdotu_sub",
     "cblas_zdotc_sub"]  # fmt: skip


def build_minblas(original: Path, out: Path, wanted: set[str] | None = None) -> Path:
    """OpenBLAS's SONAME and the symbols the bundle imports: CBLAS for real, the rest
    (LAPACK, for numpy.linalg) stops the program with a message if it is ever called."""
    symbols, _versions = dynamic_symbols(original)
    exported = {name for name, _v, _k, _s in symbols}
    ddot = next((n for n in exported if n.endswith(("cblas_ddot", "cblas_ddot64_"))
                 and "cblas_ddot" in n), None)  # fmt: skip
    if ddot is None:
        raise RuntimeError(f"{original.name} exports no cblas_ddot")
    prefix, suffix = ddot.split("cblas_ddot", 1)
    implemented = {f"{prefix}{r}{suffix}" for r in MINBLAS_ROUTINES}
    missing = sorted((wanted if wanted is not None else exported) & exported - implemented)
    lines = [
        "/* Generated by packaging/slim.py: what minblas.c does not implement. */",
        "#include <stdlib.h>",
        "#include <string.h>",
        "#include <unistd.h>",
        "static void missing(const char *name) {",
        '    static const char head[] = "desktop-call: this build has no LAPACK (numpy.linalg): ";',
        "    (void)!write(2, head, sizeof head - 1);",
        "    (void)!write(2, name, strlen(name));",
        '    (void)!write(2, "\\n", 1);',
        "    abort();",
        "}",
    ]
    for index, name in enumerate(missing):
        lines.append(
            f'long miss_{index}(void) __asm__("{name}") __attribute__((visibility("default")));\n'
            f'long miss_{index}(void) {{ missing("{name}"); return 0; }}'
        )
    out.mkdir(parents=True, exist_ok=True)
    generated = out / "minblas_missing.c"
    generated.write_text("\n".join(lines) + "\n")
    name = soname(original) or original.name
    target = out / name
    blasint = "int64_t" if "64" in suffix else "int"
    subprocess.run(
        [os.environ.get("CC", "gcc"), "-shared", "-fPIC", "-O2", "-std=gnu11",
         "-fvisibility=hidden", f"-DPREFIX={prefix}", f"-DSUFFIX={suffix}",
         f"-DBLASINT={blasint}", f"-Wl,-soname,{name}", "-s", "-o", str(target),
         str(Path(__file__).resolve().parent / "minblas.c"), str(generated)],
        check=True,
    )  # fmt: skip
    return target


# ----------------------------------------------------------------- Linux: ICU data

#: ICU data items kept (fnmatch on the item name without the "icudt73l/" prefix). Qt
#: 6 calls ICU for: u_strToUpper/Lower (locale case mapping: code, no data), ucol_*
#: (QCollator: the root collation is enough), ucal_* (time-zone IDs and display
#: names: locale and zone data), ucnv_* (QStringConverter for non-Unicode encodings:
#: aliases only, so names resolve and fail cleanly). Break iterators, transliterators,
#: unit/currency/language/region names, spoof checks and 200 legacy code pages are
#: never reached from Qt.
ICU_KEEP = [
    "*.icu",  # properties, normalization, converter aliases (not unames, below)
    "*.nrm",
    "*.spp",
    "res_index.res",
    "pool.res",
    "root.res",
    "en*.res",
    "supplementalData.res",
    "likelySubtags.res",
    "metadata.res",
    "parentLocales.res",
    "zoneinfo64.res",
    "timezoneTypes.res",
    "metaZones.res",
    "windowsZones.res",
    "keyTypeData.res",
    "zone/res_index.res",
    "zone/pool.res",
    "zone/root.res",
    "zone/en*.res",
    "coll/res_index.res",
    "coll/root.res",
    "coll/ucadata.icu",
    "coll/en*.res",
]
ICU_DROP = ["unames.icu", "cnv/*", "*.cnv"]


def _icu_blob(library: Path) -> tuple[bytes, str]:
    """The common data package inside ``libicudataNN.so`` and its symbol name."""
    symbols, _ = dynamic_symbols(library)
    name = next(n for n, _v, kind, _s in symbols if re.fullmatch(r"icudt\d+_dat", n))
    data = library.read_bytes()
    # The symbol's value is its address; find the file offset through the sections.
    value = None
    for line in _run("readelf", "--dyn-syms", "-W", str(library)).splitlines():
        match = _DYNSYM.match(line)
        if match and match.group(6).split("@")[0] == name:
            value = int(match.group(1), 16)
    sections = _run("readelf", "-S", "-W", str(library))
    for match in re.finditer(
        r"\]\s+(\S+)\s+\w+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", sections
    ):
        addr, off, size = (int(match.group(i), 16) for i in (2, 3, 4))
        if value is not None and addr <= value < addr + size:
            start = off + value - addr
            return data[start : off + size], name
    raise RuntimeError(f"cannot find {name} in {library}")


def trim_icu_data(library: Path, out: Path, log=print) -> Path:
    """Rebuild ``libicudataNN.so`` with only the ``ICU_KEEP`` items."""
    blob, symbol = _icu_blob(library)
    header_size, magic1, magic2 = struct.unpack_from("<HBB", blob, 0)
    if (magic1, magic2) != (0xDA, 0x27):
        raise RuntimeError("not an ICU common data package")
    header = blob[:header_size]
    count = struct.unpack_from("<I", blob, header_size)[0]
    toc = [struct.unpack_from("<II", blob, header_size + 4 + 8 * i) for i in range(count)]
    items = []
    base = header_size
    for i, (name_off, data_off) in enumerate(toc):
        name = blob[base + name_off : blob.index(b"\0", base + name_off)].decode("ascii")
        end = toc[i + 1][1] if i + 1 < count else len(blob) - base
        items.append((name, blob[base + data_off : base + end]))
    prefix = items[0][0].split("/", 1)[0] + "/"

    def keep(name: str) -> bool:
        short = name[len(prefix) :]
        if any(fnmatch.fnmatch(short, p) for p in ICU_DROP):
            return False
        return any(fnmatch.fnmatch(short, p) for p in ICU_KEEP)

    kept = [(n, d) for n, d in items if keep(n)]
    # Rebuild: header, count, TOC of (name offset, data offset) from the TOC's start,
    # names, then the items, each 16-byte aligned (as ICU's pkgdata writes them).
    names = b"".join(n.encode("ascii") + b"\0" for n, _ in kept)
    toc_size = 4 + 8 * len(kept)
    offset = toc_size + len(names)
    offset += -offset % 16
    entries, body, name_pos = [], bytearray(), toc_size
    for n, d in kept:
        entries.append((name_pos, offset + len(body)))
        name_pos += len(n) + 1
        body += d
        body += b"\0" * (-len(body) % 16)
    new = bytearray(header)
    new += struct.pack("<I", len(kept))
    for e in entries:
        new += struct.pack("<II", *e)
    new += names
    new += b"\0" * (-(len(new) - header_size) % 16)
    new += body
    out.mkdir(parents=True, exist_ok=True)
    (out / "icudata.bin").write_bytes(new)
    name = soname(library) or library.name
    asm = out / "icudata.S"
    asm.write_text(
        f"\t.section .rodata\n\t.globl {symbol}\n\t.type {symbol}, @object\n\t.balign 16\n"
        f'{symbol}:\n\t.incbin "{(out / "icudata.bin").as_posix()}"\n'
        f"\t.size {symbol}, . - {symbol}\n"
        '\t.section .note.GNU-stack,"",@progbits\n'
    )
    target = out / name
    subprocess.run(
        [os.environ.get("CC", "gcc"), "-shared", "-nostdlib", f"-Wl,-soname,{name}", "-s",
         "-o", str(target), str(asm)],
        check=True,
    )  # fmt: skip
    log(
        f"slim: ICU data {len(items)} -> {len(kept)} items, "
        f"{library.stat().st_size / 1e6:.1f} -> {target.stat().st_size / 1e6:.1f} MB"
    )
    return target


def trim_icu(binaries, work: Path, log=print):
    result = []
    for entry in binaries:
        file = PurePosixPath(_dest(entry)).name
        if re.fullmatch(r"libicudata\.so\.\d+", file) and entry[1]:
            result.append(
                (entry[0], str(trim_icu_data(Path(entry[1]), work / "icu", log)), entry[2])
            )
        else:
            result.append(entry)
    return result


# ----------------------------------------------------------------- Linux: prune


def _is_root(dest: str) -> bool:
    """Not a candidate for pruning: Python extensions, Qt plugins, libpython, and any
    library inside a Python package's own folder (loaded with ctypes/dlopen by that
    package, as livekit.rtc does: no NEEDED entry points at it). Candidates are only
    where PyInstaller puts linked dependencies: the top level, ``*.libs/`` folders
    (auditwheel) and Qt's ``lib/``."""
    path = PurePosixPath(dest)
    name = path.name
    parent = str(path.parent)
    dependency_folder = parent in (".", "") or parent.endswith(".libs") or parent.endswith("Qt/lib")
    return (
        not dependency_folder
        or name.endswith(".abi3.so")
        or ".cpython-" in name
        or "/lib-dynload/" in f"/{dest}"
        or bool(_QT_PLUGIN.search(dest))
        or name.startswith("libpython")
    )


def prune(binaries, log=print):
    """Drop shared libraries that nothing kept links to any more (Linux ELF only)."""
    by_name: dict[str, list] = {}
    for entry in binaries:
        by_name.setdefault(PurePosixPath(_dest(entry)).name, []).append(entry)
    seen: set[str] = set()
    todo = [e for e in binaries if _is_root(_dest(e))]
    while todo:
        entry = todo.pop()
        key = _dest(entry)
        if key in seen or not entry[1] or not Path(entry[1]).is_file():
            continue
        seen.add(key)
        try:
            deps = needed(entry[1])
        except subprocess.CalledProcessError:
            continue
        for dep in deps:
            todo.extend(by_name.get(dep, []))
    kept, dropped = [], []
    for entry in binaries:
        dest = _dest(entry)
        if dest in seen or not re.search(r"\.so(\.[\d.]+)?$", dest) or _is_root(dest):
            kept.append(entry)
        else:
            dropped.append(PurePosixPath(dest).name)
    if dropped:
        log(f"slim: pruned {len(dropped)} unreferenced libraries: {' '.join(sorted(dropped))}")
    return kept


# ----------------------------------------------------------------- Linux: strip


def _has_symbols(path: str) -> bool:
    sections = _run("readelf", "-S", "-W", path)
    return ".symtab" in sections or ".debug_info" in sections


def _segments_aligned(path: str) -> bool:
    """Every LOAD segment's file offset and address agree modulo its alignment."""
    for line in _run("readelf", "-l", "-W", path).splitlines():
        parts = line.split()
        if parts[:1] == ["LOAD"]:
            offset, vaddr, align = int(parts[1], 16), int(parts[2], 16), int(parts[-1], 16)
            if align > 1 and offset % align != vaddr % align:
                return False
    return True


def strip_binaries(binaries, work: Path, log=print):
    """Strip the symbol tables and debug information that some wheels leave in
    (uvloop: 13 -> 1.6 MB, libpython: 23 -> 5.6 MB), checking each result: strip
    rewrites libraries that patchelf extended (Qt's FFmpeg) into ones the loader
    refuses ("ELF load command address/offset not page-aligned"); those stay as
    they are. PyInstaller's own strip option has no such check."""
    result, saved = [], 0
    for entry in binaries:
        src = entry[1]
        if entry[2] == "SYMLINK" or not src or not Path(src).is_file():
            result.append(entry)
            continue
        try:
            worth = _has_symbols(src)
        except subprocess.CalledProcessError:
            worth = False  # not ELF
        if not worth:
            result.append(entry)
            continue
        target = work / "strip" / _dest(entry)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        done = subprocess.run(["strip", str(target)], capture_output=True)
        if done.returncode != 0 or not _segments_aligned(str(target)):
            log(f"slim: left unstripped (strip would break it): {_dest(entry)}")
            result.append(entry)
            continue
        saved += Path(src).stat().st_size - target.stat().st_size
        result.append((entry[0], str(target), entry[2]))
    log(f"slim: strip saves {saved / 1e6:.1f} MB")
    return result


def linux_slim(binaries, work: Path, no_gpl: bool = False, log=print):
    """Stubs, the ICU data and the prune, where the tools for them are there."""
    if not sys.platform.startswith("linux"):
        return binaries
    tools = ("readelf", "strip", os.environ.get("CC", "gcc"))
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        log(f"slim: {' and '.join(missing)} not found: no stubs, full ICU (a bigger build)")
        return binaries
    binaries = leave_host_libs(binaries, log)
    binaries = stub_binaries(binaries, work, no_gpl, log)
    binaries = trim_icu(binaries, work, log)
    binaries = prune(binaries, log)
    return strip_binaries(binaries, work, log)
