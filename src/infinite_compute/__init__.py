"""Reproducibility bundle for "Pre-training under infinite compute" (Kim et al., arXiv 2509.14786)."""

__version__ = "0.1.0"
