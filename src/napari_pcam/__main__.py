"""``python -m napari_pcam`` runs the ``napari-pcam`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
