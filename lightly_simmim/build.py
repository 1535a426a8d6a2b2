"""From a run config to the objects it names: the method and the datasets.

Every name goes through the entry points (:mod:`lightly_simmim.registry`): the method
(``method.name``), its pluggable components (``method.head``, ``method.loss``,
``method.transform``) and the datasets (``data.dataset``, ``eval.dataset``). Nothing
here is special-cased for the built-ins, so a third-party plugin is used by name.
"""

from __future__ import annotations

from typing import TypedDict, TypeVar, cast

from torch.utils.data import Dataset, Subset

from lightly_simmim import registry
from lightly_simmim.config import Config, ConfigError, from_dict
from lightly_simmim.data import (
    DatasetNotFoundError,
    ImageDataset,
    build_dataset,
    num_classes,
)
from lightly_simmim.encoders import MaskedEncoder, TimmKwargs
from lightly_simmim.encoders.init import simmim_vit_init_
from lightly_simmim.methods import (
    HeadFactory,
    LossFactory,
    PretrainMethod,
    TransformFactory,
)

__all__ = [
    "Splits",
    "build_method",
    "dataset_splits",
    "method_class",
    "method_settings",
    "subset",
]

Splits = dict[str, ImageDataset]
"""``"train"`` (pretraining images), ``"memory"`` and ``"test"`` (the evaluation's
training and test splits), untransformed: ``(image, label)`` pairs."""

_Sample = TypeVar("_Sample")


class _Components(TypedDict):
    """The pluggable components a config names; None = the method's own."""

    head: HeadFactory | None
    loss: LossFactory | None
    transform: TransformFactory | None


def method_class(config: Config) -> type[PretrainMethod]:
    """The class of the ``lightly.methods`` entry point ``config.method.name``.

    Raises:
        UnknownComponentError: No such entry point (the known names are listed).
        PluginLoadError: The plugin fails to import.
        ConfigError: The entry point is not a ``PretrainMethod`` subclass.
    """
    cls = registry.get("methods", config.method.name)
    if not (isinstance(cls, type) and issubclass(cls, PretrainMethod)):
        raise ConfigError(
            f"method.name={config.method.name!r} names {cls!r}, which is not a "
            "lightly_simmim.methods.PretrainMethod subclass."
        )
    return cls


def method_settings(config: Config) -> object:
    """The method's options checked against its ``Settings`` dataclass.

    Raises:
        ConfigError: An option is unknown, of the wrong type or out of range.
    """
    cls = method_class(config)
    settings: object = from_dict(cls.Settings, config.method.options, "method.")
    return settings


def _component(group: str, name: str | None) -> object:
    return None if name is None else registry.get(group, name)


def _components(config: Config) -> _Components:
    """``head`` / ``loss`` / ``transform`` classes the config names (None = own)."""
    method = config.method
    # An entry point's signature is its plugin's promise: only a call can check it
    # (the method calls each as its ``HeadFactory`` etc. says).
    return _Components(
        head=cast(HeadFactory | None, _component("heads", method.head)),
        loss=cast(LossFactory | None, _component("losses", method.loss)),
        transform=cast(
            TransformFactory | None, _component("transforms", method.transform)
        ),
    )


def build_method(
    config: Config,
    *,
    with_classes: bool = True,
    encoder_kwargs: TimmKwargs | None = None,
) -> PretrainMethod:
    """Builds the method a config names, with a freshly initialised encoder.

    Args:
        config: The run config.
        with_classes: Size the online classifier from the dataset (reads an image
            folder's class folders); False builds none.
        encoder_kwargs: Extra ``timm.create_model`` arguments over
            ``encoder.kwargs`` (a fine-tune's ``drop_path_rate``).

    Returns:
        The ``LightningModule`` of the ``lightly.methods`` entry point
        ``config.method.name``, sized and optimised as the config says.

    Raises:
        ConfigError: A method option is unknown or of the wrong type, or a
            component does not fit the method.
        UnknownComponentError: No such method or component is registered.
        PluginLoadError: A plugin fails to import.
    """
    cls = method_class(config)
    settings = method_settings(config)
    kwargs = {**config.encoder.kwargs, **(encoder_kwargs or {})}
    encoder = cls.build_encoder(config.encoder.name, kwargs)
    if config.encoder.init == "simmim":
        if not isinstance(encoder, MaskedEncoder):
            raise ConfigError(
                f"encoder.init: simmim re-initialises SimMIM's masked ViT encoder; "
                f"method {config.method.name!r} builds a {type(encoder).__name__}."
            )
        simmim_vit_init_(encoder)
    classes = None
    if with_classes and config.trainer.online_classifier:
        classes = num_classes(config.data.dataset, config.data.root)
    return cls(
        encoder,
        settings,
        input_size=config.data.input_size,
        in_chans=config.data.in_chans,
        batch_size_per_device=config.data.batch_size,
        mean=config.data.mean,
        std=config.data.std,
        num_classes=classes,
        optimizer=config.optim,
        schedule=config.schedule,
        seed=config.seed,
        **_components(config),
    )


def subset(dataset: Dataset[_Sample], limit: int | None) -> Dataset[_Sample]:
    """``limit`` images spread evenly over ``dataset`` (all of it for None).

    Evenly spaced rather than the first ones: image folders are sorted by class, so
    the first N images would often be a single class.
    """
    size = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= size:
        return dataset
    return Subset(dataset, [i * size // limit for i in range(limit)])


def dataset_splits(config: Config, train: bool = True) -> Splits:
    """The untransformed datasets of a run, subsets applied.

    ``"train"``: ``data.dataset``'s training split (``data.limit_train``), only if
    ``train``; ``"memory"`` and ``"test"``: the training and test splits of
    ``eval.dataset`` (default ``data.dataset``), the kNN memory bank
    (``data.limit_train``) and queries (``data.limit_eval``). A split that is the
    same as another is built once.

    Raises:
        DatasetNotFoundError: The data are not where the config says (the message
            says how to point the config at them).
    """
    data = config.data
    eval_name = config.eval.dataset or data.dataset

    def build(name: str, split_train: bool) -> ImageDataset:
        try:
            dataset = build_dataset(
                name,
                root=data.root,
                train=split_train,
                download=data.download,
                on_corrupt=data.on_corrupt,
                check_images=data.check_images,
            )
        except DatasetNotFoundError as error:
            # The data package knows the layout; only the config knows the key.
            raise DatasetNotFoundError(
                f"{error} Point the config at the data with --set data.root=PATH."
            ) from error
        # Without a transform a builder gives PIL images (the DatasetBuilder contract).
        images = cast(ImageDataset, dataset)
        return subset(images, data.limit_train if split_train else data.limit_eval)

    splits: Splits = {}
    if train:
        splits["train"] = build(data.dataset, True)
    if train and eval_name == data.dataset:
        splits["memory"] = splits["train"]
    else:
        splits["memory"] = build(eval_name, True)
    splits["test"] = build(eval_name, False)
    return splits
