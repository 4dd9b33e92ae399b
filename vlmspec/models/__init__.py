"""Model implementations documented by the seed API pages (see ``vlmspec.models.llama_nemotron_vl``)."""
