"""Utilities: conv arithmetic, data loading."""
