"""fairray."""
