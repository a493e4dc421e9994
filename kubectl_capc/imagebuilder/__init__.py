"""Building node images with image-builder and converting them for CloudStack (subprocess-driven tools)."""
