"""PyInstaller hook: livekit.rtc, whose WebRTC audio processing (echo cancellation,
noise suppression) desktop_call.media.audio_processing uses.

livekit.rtc loads its native library with ctypes from the package's ``resources``
folder (importlib.resources), which PyInstaller's import analysis cannot see: collect
the library, the resources package and the library's third-party licence notices.
"""

from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs

binaries = collect_dynamic_libs("livekit.rtc")
datas = collect_data_files("livekit.rtc", includes=["resources/LICENSE.md"])
hiddenimports = ["livekit.rtc.resources"]
