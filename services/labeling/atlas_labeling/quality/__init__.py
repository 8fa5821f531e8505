"""Labeling quality algorithms: consensus, agreement, label-error detection, auto-labeling
thresholds and active-learning order.

Pure functions over plain Python and NumPy values (no storage, no gRPC), so the service,
the benchmark and the tests call the same code. Modules:

- `consensus`: majority vote, Dawid–Skene, box / span / OCR-text merging.
- `agreement`: Cohen's kappa, Fleiss' kappa, Krippendorff's alpha, per-annotator agreement.
- `errors`: label issues by confident learning (cleanlab) and the prediction-mismatch baseline.
- `autolabel`: the score threshold at which a model's labels reach a target accuracy.
- `active`: uncertainty ordering of the queue and k-center diversity batches.
"""
