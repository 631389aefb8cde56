"""mmuemu: a cycle-approximate emulator of MMU hardware and Linux page-fault handling."""

__version__ = "0.1.0"
__all__ = ["__version__"]
