"""accelsim.models."""
