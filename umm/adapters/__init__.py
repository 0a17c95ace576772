"""One adapter file per model family; see ``umm.registry`` for the lazy lookup."""
