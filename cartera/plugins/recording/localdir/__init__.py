"""Recording store in a local (or mounted) directory, checksum-verified and never overwritten."""
