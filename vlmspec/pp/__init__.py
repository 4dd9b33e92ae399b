"""Implementation of ``vlmspec.pp_media`` (pipeline-parallel media chunking); import from the facade."""
