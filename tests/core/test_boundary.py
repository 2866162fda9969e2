"""core/ must run on a headless node: importing it never imports napari, Qt or magicgui."""

import subprocess
import sys


def test_core_does_not_import_gui_packages():
    code = (
        "import sys, napari_pcam, napari_pcam.core.pipeline, napari_pcam.cli\n"
        "import pkgutil, importlib, napari_pcam.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'napari_pcam.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('napari', 'qtpy', 'magicgui', 'PyQt5', 'PySide2', 'PyQt6', 'PySide6', 'napari_pcam.gui')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_import_is_light_and_api_resolves():
    code = (
        "import sys, napari_pcam\n"
        "assert 'torch' not in sys.modules and 'napari' not in sys.modules\n"
        "for name in napari_pcam.__all__:\n"
        "    assert getattr(napari_pcam, name) is not None, name\n"
        "assert 'napari' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
