"""accelsim.analysis."""
