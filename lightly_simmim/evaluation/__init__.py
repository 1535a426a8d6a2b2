"""Evaluation of pretrained encoders: kNN, linear probe and fine-tune.

Every protocol reports top-1 and top-5 accuracy in percent (top-5 is
top-``min(5, classes)``), and :func:`write_results` stores a result as JSON.

- Features for kNN / linear: :func:`extract_features` with a ``layer`` and a
  ``pooling`` (:class:`FeatureExtractor`); the last layer of a masked-image model is
  often a weak frozen feature, so compare a few layers. :func:`predict_features`
  does the same on a Lightning Trainer's devices.
- kNN: :func:`knn_accuracy` on features.
- Linear probe: :func:`linear_probe` on features, :func:`linear_eval` from an
  encoder and datasets.
- Fine-tune: :func:`finetune` with a :class:`FinetuneRecipe` (SimMIM's official
  recipe: timm's Mixup / CutMix, RandAugment, random erasing, layer decay, ...).
- Devices: :func:`linear_eval` and :func:`finetune` take a :class:`TrainerFactory`
  (one device by default; a run's evaluation uses the run's devices).
- A method or run folder with one protocol: :mod:`.protocol` (config-aware, so it is
  imported on its own: ``from lightly_simmim.evaluation.protocol import
  evaluate_run``).

Example, kNN and linear probe of the fourth-last block, then a fine-tune::

    train = extract_features(encoder, train_loader, layer=-4, pooling="avg")
    test = extract_features(encoder, test_loader, layer=-4, pooling="avg")
    write_results(knn_accuracy(*train, *test, num_classes=10), "runs/x", "knn")
    linear = linear_probe(*train, *test, num_classes=10)
    tuned = finetune(encoder, train_set, val_set, 10, FinetuneRecipe(epochs=50,
                     warmup_epochs=5), output_dir="runs/x")
"""

from lightly_simmim.evaluation.beit import split_shared_rel_pos_bias, use_mean_pooling
from lightly_simmim.evaluation.classifier import (
    drop_path_rate,
    resolve_head_init_scale,
    resolve_layer_decay,
    timm_classifier,
)
from lightly_simmim.evaluation.features import extract_features, predict_features
from lightly_simmim.evaluation.finetune import FinetuneResult, finetune
from lightly_simmim.evaluation.finetune_data import FinetuneData
from lightly_simmim.evaluation.finetune_module import (
    EpochRecord,
    FinetuneModule,
    build_mixup,
)
from lightly_simmim.evaluation.knn import knn_accuracy
from lightly_simmim.evaluation.linear import linear_eval, linear_probe
from lightly_simmim.evaluation.optimizer import finetune_optimizer
from lightly_simmim.evaluation.pooling import POOLINGS, FeatureExtractor, Pooling
from lightly_simmim.evaluation.recipes import FinetuneRecipe, LinearRecipe, override
from lightly_simmim.evaluation.results import write_results
from lightly_simmim.evaluation.trainers import TrainerFactory, local_trainer
from lightly_simmim.evaluation.transforms import classification_transforms

__all__ = [
    "POOLINGS",
    "EpochRecord",
    "FeatureExtractor",
    "FinetuneData",
    "FinetuneModule",
    "FinetuneRecipe",
    "FinetuneResult",
    "LinearRecipe",
    "Pooling",
    "TrainerFactory",
    "build_mixup",
    "classification_transforms",
    "drop_path_rate",
    "extract_features",
    "finetune",
    "finetune_optimizer",
    "knn_accuracy",
    "linear_eval",
    "linear_probe",
    "local_trainer",
    "override",
    "predict_features",
    "resolve_head_init_scale",
    "resolve_layer_decay",
    "split_shared_rel_pos_bias",
    "timm_classifier",
    "use_mean_pooling",
    "write_results",
]
