"""accelsim.traces."""
