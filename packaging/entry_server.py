"""PyInstaller entry point of the room server (``desktop-call-server``)."""

import sys

from desktop_call.server.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
