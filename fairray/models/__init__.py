"""fairray.models."""
