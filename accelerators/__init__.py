"""Accelerators V1-V7: each checks its own assumption and switches itself off when the data say it is wrong."""
