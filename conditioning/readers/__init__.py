"""Pattern file readers and writers (one module per format family)."""
