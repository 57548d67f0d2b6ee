"""skipexp: experiments on why skip connections let deep networks train."""
__version__ = "0.1.0"
