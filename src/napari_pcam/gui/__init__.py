"""napari widgets and contributions: the only package that imports napari, qtpy or magicgui."""
