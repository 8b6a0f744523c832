"""Execution engines for batch safeguarding beyond this process (Ray Data)."""
