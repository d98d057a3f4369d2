"""Local `evaluate` modules shipped with ser-hf (loadable by path, no Hub access needed)."""
