"""fairray.debias."""
