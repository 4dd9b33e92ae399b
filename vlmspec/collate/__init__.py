"""Implementation of :mod:`vlmspec.collate_fns` (the documented facade)."""
