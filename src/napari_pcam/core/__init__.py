"""Headless core of napari-pcam: never imports napari, qtpy, magicgui or napari_pcam.gui."""
