"""The layering rule of docs/architecture.md: arrows point down only."""

import subprocess
import sys

import pytest

FORBIDDEN = {
    "desktop_call.signaling": ["websockets", "aiortc", "av", "PySide6", "qasync", "asyncio"],
    "desktop_call.server": ["aiortc", "av", "PySide6", "qasync", "numpy"],
    "desktop_call.call": ["PySide6", "qasync"],
}


@pytest.mark.parametrize(("package", "forbidden"), FORBIDDEN.items())
def test_lower_layers_do_not_import_upper_ones(package, forbidden):
    code = (
        "import importlib, sys, json\n"
        f"importlib.import_module({package!r})\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(__import__("json").loads(out))
    assert package.split(".")[0] in loaded
    assert not loaded & set(forbidden), f"{package} imports {sorted(loaded & set(forbidden))}"
