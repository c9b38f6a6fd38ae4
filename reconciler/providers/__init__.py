"""Fabrics drctl can drive, each behind the Protocol in `base`."""
