"""Robust (re-labeling) learners on the shared training engine.

``--robust-learner CE | SOP | DivideMix``; each learner also names the learner that
trains its selection warm-up (:meth:`warmup`), as the Prune4ReL reference does.
"""

from __future__ import annotations

from . import ce, dividemix, sop  # noqa: F401  (register CE, DivideMix, SOP)
from .base import build_learner, get_learner, learner_names, register_learner

__all__ = ["build_learner", "get_learner", "learner_names", "register_learner"]
