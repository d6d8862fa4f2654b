"""fairray.labelers."""
