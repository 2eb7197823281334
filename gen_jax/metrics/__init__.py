"""Sample-quality metrics and the networks they need: the metrics on feature vectors
(`sample_quality`, numpy in float64) and the feature networks (`features`: the FID
InceptionV3 from its PyTorch weights in `inception` / `torch_weights`, or a trained gen_jax
classifier restored from its workdir). The evaluators (`gen_jax.evaluators`) tie them to a
run."""
