import pytest
import torch

from lightly_simmim.evaluation import extract_features, knn_accuracy


def _reference_knn(train, train_labels, test, classes, k, t):
    # Weighted kNN vote written out per sample: cosine similarity, top k neighbours,
    # weight exp(sim / t), class with the largest summed weight wins.
    train = train / train.norm(dim=1, keepdim=True)
    preds = []
    for x in test:
        x = x / x.norm()
        sims = train @ x
        top = sims.topk(k)
        scores = torch.zeros(classes, dtype=torch.float64)
        for s, i in zip(top.values, top.indices, strict=True):
            scores[train_labels[i]] += torch.exp(s.double() / t)
        preds.append(int(scores.argmax()))
    return torch.tensor(preds)


def test_knn__separable_clusters_are_perfect() -> None:
    torch.manual_seed(0)
    centers = torch.eye(4, 16) * 10
    train_labels = torch.arange(4).repeat(25)
    test_labels = torch.arange(4).repeat(5)
    train = centers[train_labels] + torch.randn(100, 16)
    test = centers[test_labels] + torch.randn(20, 16)
    result = knn_accuracy(train, train_labels, test, test_labels, num_classes=4, k=10)
    assert result == {"top1": 100.0, "top5": 100.0}


def test_knn__matches_reference_on_random_features() -> None:
    torch.manual_seed(1)
    train, test = torch.randn(60, 8), torch.randn(30, 8)
    train_labels = torch.randint(0, 3, (60,))
    test_labels = torch.randint(0, 3, (30,))
    ref = _reference_knn(train, train_labels, test, 3, k=7, t=0.5)
    expected = 100.0 * int((ref == test_labels).sum()) / len(test_labels)
    got = knn_accuracy(
        train, train_labels, test, test_labels, 3, k=7, temperature=0.5, batch_size=8
    )
    assert got["top1"] == pytest.approx(expected, abs=1e-6)
    assert got["top5"] == 100.0  # 3 classes: top-5 always contains the label


def test_knn__rejects_empty_and_mismatched() -> None:
    with pytest.raises(ValueError, match="at least one"):
        knn_accuracy(
            torch.zeros(0, 2), torch.zeros(0), torch.ones(1, 2), torch.ones(1), 2
        )
    with pytest.raises(ValueError, match="same length"):
        knn_accuracy(
            torch.ones(3, 2), torch.zeros(2), torch.ones(1, 2), torch.ones(1), 2
        )


def test_extract_features__eval_mode_and_restores_training() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.9))
    model.train()
    batches = [(torch.ones(2, 1, 2, 2), torch.tensor([0, 1]))] * 3
    feats, labels = extract_features(model, batches)
    assert feats.shape == (6, 4) and torch.equal(feats, torch.ones(6, 4))  # no dropout
    assert labels.tolist() == [0, 1] * 3
    assert model.training


def test_knn__temperatures_that_overflow_float32_are_refused() -> None:
    """Below 1 / 88.7 the vote weights exp(sim / t) overflow float32 and the
    prediction is noise (measured: 37.5 % at t = 0.012, 3.1 % at t = 0.011)."""
    from lightly_simmim.config.schema import EvalConfig
    from lightly_simmim.evaluation.knn import MIN_TEMPERATURE

    assert torch.isfinite(torch.tensor(1.0 / MIN_TEMPERATURE).exp())
    assert not torch.isfinite(torch.tensor(1.0 / (MIN_TEMPERATURE - 0.001)).exp())
    torch.manual_seed(1)
    train, labels = torch.randn(20, 4), torch.randint(0, 2, (20,))
    args = (train, labels, train, labels, 2)
    assert knn_accuracy(*args, k=5, temperature=MIN_TEMPERATURE)["top1"] > 50
    with pytest.raises(ValueError, match="overflow float32"):
        knn_accuracy(*args, k=5, temperature=0.011)
    # The config refuses the same values, before anything runs.
    EvalConfig(knn_temperature=MIN_TEMPERATURE)
    with pytest.raises(ValueError, match=r">= 0\.012"):
        EvalConfig(knn_temperature=0.011)
