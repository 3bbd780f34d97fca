"""Simulator, Parquet datasets, training and evaluation reports.

- ``world``, ``population``, ``typologies``, ``calls``: the simulated Kazakh telecom world
  (numbers and registry, legitimate behaviour, fraud actors, one day's calls and routing);
  ``simulator`` draws it per day and streams it to disk (interface B).
- ``dataset``: a world on disk as features (``features.offline.build``) with aligned labels.
- ``train``: LightGBM with a time split, early stopping and thresholds from target FPRs.
- ``rules_baseline``, ``evaluate``, ``report``: the evaluation against the champion and the
  rules operators run today, written as HTML with PNG plots.
"""
