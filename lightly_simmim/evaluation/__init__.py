"""Evaluation of pretrained encoders: features and kNN accuracy."""

from lightly_simmim.evaluation.features import extract_features
from lightly_simmim.evaluation.knn import knn_accuracy

__all__ = ["extract_features", "knn_accuracy"]
