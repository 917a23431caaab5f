"""Powder indexing: unit cells from peak positions, figures of merit, space-group hints."""
