"""PyInstaller entry point: the app (``desktop-call``), or the room server when started
as ``desktop-call-server``.

On Linux the frozen build has one executable and ``desktop-call-server`` is a link to
it (build.spec): one copy of the bundled Python modules instead of two (2.8 MB). On
Windows (a windowed and a console program) and macOS, the server has its own
executable built from packaging/entry_server.py.
"""

import os
import sys


def main() -> int:
    if os.path.basename(sys.argv[0]).startswith("desktop-call-server"):
        from desktop_call.server.__main__ import main as server_main

        return server_main()
    from desktop_call.__main__ import main as app_main

    return app_main()


if __name__ == "__main__":
    sys.exit(main())
