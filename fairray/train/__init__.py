"""fairray.train."""
