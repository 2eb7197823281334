"""Datasets: tfds builders (offline ones in `builders`), grain pipelines, on-device augmentation."""
