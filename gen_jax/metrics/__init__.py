"""Sample-quality evaluation: the metrics on feature vectors (`sample_quality`, numpy in
float64), the feature networks (`features`: the FID InceptionV3 from its PyTorch weights, or a
trained gen_jax classifier) and the resumable evaluation that ties them to a run
(`evaluator`)."""
