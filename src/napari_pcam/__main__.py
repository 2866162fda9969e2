"""``python -m napari_pcam`` runs the ``napari-pcam`` command."""

import sys

from .cli import main

sys.exit(main())
