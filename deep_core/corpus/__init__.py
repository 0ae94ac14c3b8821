"""Corpus pruning by embedding geometry: embed an image folder or read an embeddings file,
cluster it, run a corpus method (KMeansQuantile, SSP, SemDeDup, ClusterSubsample, DBP) and
write the kept keys, per-sample scores, copies and histograms (``deepcore-prune``).

Modules: :mod:`.method` (the corpus-method contract), :mod:`.rules` (per-group keep rules),
:mod:`.dedup` (SemDeDup's exact blockwise similarities, workers, shards), :mod:`.embed`
(images to embeddings, cached), :mod:`.outputs` (atomic output folder), :mod:`.run` (the
command's pipeline).
"""
