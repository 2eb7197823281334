"""Sample-quality metrics on feature vectors: pure numpy in float64, no model inside."""
