"""The corpus-method contract: :class:`CorpusMethod`, :class:`CorpusResult`, :class:`Target`,
:class:`Precomputed` (defined in :mod:`deep_core.methods._corpus`, next to the registry).
"""

from ..methods._corpus import (
    CorpusMethod,
    CorpusResult,
    Precomputed,
    Target,
    features_of,
)

__all__ = ["CorpusMethod", "CorpusResult", "Precomputed", "Target", "features_of"]
