"""Corpus pruning by embedding geometry: embed an image folder or read an embeddings file,
cluster it, run a corpus method (KMeansQuantile, SSP, SemDeDup, ClusterSubsample, DBP) and
write the kept keys, per-sample scores, copies and histograms (``deepcore-prune``).

This package is the application only: :mod:`.embed` (images to embeddings, cached),
:mod:`.outputs` (atomic output folder), :mod:`.run` (the command's pipeline). The methods
and their contract live in :mod:`deep_core.methods` (``_corpus``: :class:`CorpusMethod`,
:class:`Target`, :class:`Precomputed`), the per-group keep rules in :mod:`deep_core.budget`,
k-means and SemDeDup's similarities in :mod:`deep_core.neighbors`.
"""
