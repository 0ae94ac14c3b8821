"""Selection methods, registered by class name.

Import order registers them; ``list_methods()`` shows what is available.
"""

from __future__ import annotations

from . import (  # noqa: F401  (baselines: uniform .. ccs)
    ccs,
    cluster_subsample,
    dbp,
    dual,
    dyn_unc,
    el2n,
    forgetting,
    glister,
    grand,
    kcenter_greedy,
    kmeans_quantile,
    moderate,
    pred_sum,
    prune4rel,
    semdedup,
    small_loss,
    ssp,
    uncertainty,
    uniform,
)
from .base import SelectionMethod, build_method, get_method, list_methods, register

__all__ = ["SelectionMethod", "build_method", "get_method", "list_methods", "register"]
