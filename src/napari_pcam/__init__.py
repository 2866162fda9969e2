"""napari-pcam: point-supervised semantic segmentation (PCAM -> IRNet -> DeepLabv3+).

The headless API lives in :mod:`napari_pcam.core`; this module never imports the napari GUI.
"""

__version__ = "0.1.0"
