"""Weighted kNN classification accuracy on frozen features (lightly's knn_predict)."""

from __future__ import annotations

import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict
from torch import Tensor

#: The lowest temperature whose vote weights exp(similarity / T), similarity <= 1,
#: stay finite in float32 (exp overflows above 88.7): 1 / 88.7 = 0.0113, rounded up.
MIN_TEMPERATURE = 0.012


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy of cosine-similarity weighted kNN voting.

    Features are L2-normalised, then each test sample takes the ``k`` most similar
    training samples and votes with weights ``exp(similarity / temperature)``, as in
    InstDisc and lightly's ``knn_predict``.

    Args:
        train_features: (N, D) features of the memory bank.
        train_labels: (N,) int labels in [0, num_classes).
        test_features: (M, D) features to classify.
        test_labels: (M,) int labels.
        num_classes: Number of classes.
        k: Neighbours (clipped to N).
        temperature: Softmax temperature of the votes.
        batch_size: Test samples per similarity matrix, to bound memory.

    Returns:
        ``{"top1": percent, "top5": percent}`` (top5 is over min(5, classes)).

    Raises:
        ValueError: On empty or mismatched inputs, or a temperature below
            :data:`MIN_TEMPERATURE`.
    """
    if len(train_features) == 0 or len(test_features) == 0:
        raise ValueError("kNN needs at least one train and one test feature.")
    if not temperature >= MIN_TEMPERATURE:
        raise ValueError(
            f"kNN temperature {temperature} is below {MIN_TEMPERATURE}: the vote "
            "weights exp(similarity / temperature) overflow float32 there, and every "
            "prediction would be noise."
        )
    if len(train_features) != len(train_labels) or len(test_features) != len(
        test_labels
    ):
        raise ValueError("features and labels must have the same length.")
    bank = F.normalize(train_features.float(), dim=1).t().contiguous()  # (D, N)
    k = min(k, len(train_features))
    top = min(5, num_classes)
    hits1 = hits5 = 0
    for start in range(0, len(test_features), batch_size):
        feats = F.normalize(test_features[start : start + batch_size].float(), dim=1)
        labels = test_labels[start : start + batch_size]
        ranked = knn_predict(
            feats, bank, train_labels.long(), num_classes, k, temperature
        )
        correct = ranked[:, :top] == labels.unsqueeze(1)  # (b, top)
        hits1 += int(correct[:, 0].sum())
        hits5 += int(correct.any(dim=1).sum())
    total = len(test_features)
    return {"top1": 100.0 * hits1 / total, "top5": 100.0 * hits5 / total}
