"""Neighbourhoods and clustering on embeddings, backed by faiss and blocked matrix products.

Shared by Prune4ReL (threshold neighbourhoods on the warm-up features) and the corpus
methods (k-means, de-duplication, density). Memory stays O(N·k) or O(N·d): no N x N
matrix is ever formed.

- :mod:`deep_core.neighbors.search`: neighbourhoods in CSR form
  (:class:`~deep_core.neighbors.search.Neighborhoods`): exact cosine threshold (range)
  search with an optional pair limit, euclidean radius self-join, and k-nearest search
  capped by a threshold (exact flat or an IVF cluster join in float32 or bfloat16).
- :mod:`deep_core.neighbors.kmeans`: k-means and nearest-centroid assignment.
- :mod:`deep_core.neighbors.dedup`: SemDeDup's exact per-cluster maxima of cosine
  similarity to earlier members, in blocks and worker processes.
"""
