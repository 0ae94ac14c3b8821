"""Selection methods, registered by class name.

Import order registers them; ``list_methods()`` shows what is available.
"""

from __future__ import annotations

from . import (  # noqa: F401  (baselines: uniform .. ccs; dynamic: rs2, infobatch, ...)
    ccs,
    cluster_subsample,
    dbp,
    dual,
    dyn_unc,
    el2n,
    ema_small_loss,
    forgetting,
    glister,
    grand,
    infobatch,
    kcenter_greedy,
    kmeans_quantile,
    moderate,
    pred_sum,
    prune4rel,
    rs2,
    semdedup,
    small_loss,
    ssp,
    uncertainty,
    uniform,
)
from .base import DynamicMethod, SelectionMethod, build_method, get_method, list_methods, register

__all__ = [
    "DynamicMethod",
    "SelectionMethod",
    "build_method",
    "get_method",
    "list_methods",
    "register",
]
