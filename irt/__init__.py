"""irt package."""
