"""deep_core: data pruning under label noise.

A registry of selection methods (``deep_core.methods``) scores per-sample training
signals (``deep_core.signals``) and keeps a subset that a robust re-labeling learner
(``robust_learners``) trains on.
"""

from __future__ import annotations

__version__ = "0.1.0"
