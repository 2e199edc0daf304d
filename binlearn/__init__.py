"""binlearn: robust spatial representations from binaural audio by feature distillation."""

__version__ = "0.1.0"
