"""Batch analysis of many patterns: resumable, fault-tolerant, on a process pool or Dask."""
