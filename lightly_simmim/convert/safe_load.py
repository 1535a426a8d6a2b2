"""Reading an official SimMIM checkpoint without running anything from the file.

The official code saves ``{'model': state_dict, 'optimizer': ..., 'lr_scheduler':
..., 'max_accuracy': ..., 'epoch': ..., 'config': <yacs CfgNode>, ['amp' | 'scaler':
...]}``. ``torch.load(weights_only=True)`` refuses it as it is, because of the pickled
``yacs.config.CfgNode`` (and possibly other objects a fork pickled in).

:func:`read_official_checkpoint` still uses torch's weights-only unpickler, the one
that never imports a module or calls a function named in the file. Every other
global the file names (listed statically by
``torch.serialization.get_unsafe_globals_in_checkpoint``) is allowed under its name
only as an inert stand-in: "creating" it makes an empty ``OrderedDict``, whatever the
arguments, so a ``CfgNode`` (a ``dict`` subclass) comes back as a mapping of its
items and a payload such as ``exec("...")`` comes back as an empty mapping, never
run. Globals from ``os`` / ``sys`` cannot even be allowed; torch refuses such a file
and so do we. yacs is not needed.
"""

from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from lightly_simmim.convert.detect import detect_family
from lightly_simmim.convert.errors import OfficialCheckpointError, name_keys
from lightly_simmim.torch_load import (
    UNREADABLE_CHECKPOINT_ERRORS,
    load_error_detail,
)

__all__ = ["CheckpointKind", "OfficialCheckpoint", "read_official_checkpoint"]

CheckpointKind = Literal["pretrain", "finetune"]

# Attribute set on the OrderedDict a stand-in makes: the global it replaced.
_GLOBAL_TAG = "_lightly_simmim_unpickled_as"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """The tensors and settings of an official SimMIM checkpoint.

    Attributes:
        state_dict: The ``'model'`` entry as stored: ``encoder.*`` (backbone with
            ``mask_token``) and ``decoder.*`` (the head's 1x1 conv) for a
            pretraining checkpoint; the bare backbone and its classifier ``head.*``
            for a fine-tuning one.
        config: The pickled yacs config as nested plain dicts (``config["DATA"]
            ["IMG_SIZE"]``), objects that were not unpickled as
            ``"<not unpickled: module.Name>"``; None if the file has none.
        kind: ``"pretrain"`` or ``"finetune"``.
        source: Where it was read from, for messages.
        epoch: The epoch it was saved at, if recorded.
    """

    state_dict: Mapping[str, Tensor]
    config: dict[str, object] | None
    kind: CheckpointKind
    source: str
    epoch: int | None = None

    @property
    def encoder_state(self) -> dict[str, Tensor]:
        """The backbone's tensors under the official backbone's own names."""
        if self.kind == "finetune":
            return dict(self.state_dict)
        return {
            key.removeprefix("encoder."): value
            for key, value in self.state_dict.items()
            if key.startswith("encoder.")
        }

    @property
    def decoder_state(self) -> dict[str, Tensor]:
        """The pretraining head's tensors (``0.weight``, ``0.bias``); empty if none."""
        return {
            key.removeprefix("decoder."): value
            for key, value in self.state_dict.items()
            if self.kind == "pretrain" and key.startswith("decoder.")
        }


def _stand_in(name: str) -> type:
    """A class that takes the place of the global ``name`` while unpickling.

    Both ways pickle "creates" an object (calling the global, or ``cls.__new__``)
    end in ``__new__``, which ignores its arguments and returns a tagged empty
    ``OrderedDict``: the one mapping type torch's unpickler lets a file fill
    (dict items) and give attributes to (``BUILD`` state).
    """

    def create(
        cls: type, *args: object, **kwargs: object
    ) -> OrderedDict[object, object]:
        node: OrderedDict[object, object] = OrderedDict()
        node.__dict__[_GLOBAL_TAG] = name
        return node

    return type(f"StandIn[{name}]", (), {"__new__": create})


def _globals_in(path: Path) -> tuple[list[str], bool]:
    """Globals the file names that torch does not allow, and whether it is a zip.

    Legacy (pre-1.6, non-zip) files cannot be listed statically; for those only the
    yacs config class gets a stand-in.
    """
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except ValueError:
        return ["yacs.config.CfgNode"], False
    return sorted(names), True


def _load_inert(path: Path) -> object:
    """``torch.load`` with weights-only unpickling and inert stand-ins."""
    # Globals allowed under a name: torch 2.6+. (TorchVersion compares as a version.)
    if torch.__version__ < "2.6":
        raise RuntimeError(
            f"Reading official SimMIM checkpoints safely needs torch>=2.6, this is "
            f"torch {torch.__version__}."
        )
    try:
        names, is_zip = _globals_in(path)
        stand_ins: list[Callable[..., object] | tuple[Callable[..., object], str]] = [
            (_stand_in(name), name) for name in names
        ]
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL (\S+)", str(error))
        if refused is None:
            raise _unreadable(path, error) from None
        raise OfficialCheckpointError(
            f"{path} was not loaded: it pickles {refused[1]}, which torch never "
            f"unpickles (nothing from the file was run)."
        ) from None
    except UNREADABLE_CHECKPOINT_ERRORS as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> OfficialCheckpointError:
    """The one-line error for a file torch cannot read, with torch's own reason."""
    return OfficialCheckpointError(
        f"{path} is not an official SimMIM checkpoint: torch.load cannot read it "
        f"({load_error_detail(error)})."
    )


def _plain(value: object) -> object:
    """Unpickled config data as plain dicts, lists and scalars."""
    if isinstance(value, Mapping):
        replaced = getattr(value, "__dict__", {}).get(_GLOBAL_TAG)
        if replaced is not None and not value and not replaced.endswith("CfgNode"):
            return f"<not unpickled: {replaced}>"
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    return value


def _entries(
    raw: object, path: Path
) -> tuple[Mapping[str, object], object, int | None]:
    """The ``'model'`` state dict, the config entry and the epoch of a file."""
    if not isinstance(raw, Mapping):
        raise OfficialCheckpointError(
            f"{path} is not an official SimMIM checkpoint: it holds a "
            f"{type(raw).__name__}, not a checkpoint dictionary."
        )
    model = raw.get("model")
    if isinstance(model, Mapping):
        epoch = raw.get("epoch")
        return model, raw.get("config"), epoch if isinstance(epoch, int) else None
    if raw and all(isinstance(value, Tensor) for value in raw.values()):
        return raw, None, None  # the 'model' entry saved on its own
    hint = (
        " (it looks like a PyTorch Lightning checkpoint, e.g. of a lightly-simmim run)"
        if "state_dict" in raw
        else ""
    )
    raise OfficialCheckpointError(
        f"{path} is not an official SimMIM checkpoint: it has no 'model' state "
        f"dict{hint}."
    )


def read_official_checkpoint(path: str | os.PathLike[str]) -> OfficialCheckpoint:
    """Reads an official SimMIM checkpoint without executing anything from it.

    Args:
        path: A ``.pth`` file saved by microsoft/SimMIM (``main_simmim.py`` or
            ``main_finetune.py``) or by the SimMIM code of microsoft/Swin-Transformer;
            also the bare ``'model'`` state dict saved on its own.

    Returns:
        The checkpoint's tensors, its config as plain data, and its kind.

    Raises:
        FileNotFoundError: No file at ``path``.
        OfficialCheckpointError: The file is unreadable, refused (it pickles a call
            torch never unpickles), or not an official SimMIM checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(
            f"{str(path)!r} is a folder; convert takes the official checkpoint file "
            "itself (e.g. simmim_pretrain__vit_base__img224__800ep.pth)."
        )
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist.")
    entries, config, epoch = _entries(_load_inert(path), path)
    state = {key: value for key, value in entries.items() if isinstance(value, Tensor)}
    if len(state) != len(entries):
        not_tensors = [key for key in entries if key not in state]
        raise OfficialCheckpointError(
            f"{path} is not an official SimMIM checkpoint: its 'model' entries "
            f"{name_keys(not_tensors)} are not tensors."
        )
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    is_pretrain = any(key.startswith("encoder.") for key in state)
    if is_pretrain:
        stray = [k for k in state if not k.startswith(("encoder.", "decoder."))]
        if stray:
            raise OfficialCheckpointError(
                f"{path}: tensors {name_keys(stray)} of a pretraining checkpoint are "
                f"neither encoder.* nor decoder.* and map nowhere."
            )
    # A config pickled as some other class than yacs' CfgNode stays unread.
    plain = _plain(config) if isinstance(config, Mapping) else None
    checkpoint = OfficialCheckpoint(
        state_dict=state,
        config=plain if isinstance(plain, dict) else None,
        kind="pretrain" if is_pretrain else "finetune",
        source=str(path),
        epoch=epoch,
    )
    if detect_family(checkpoint.encoder_state) is None:
        raise OfficialCheckpointError(
            f"{path} is not an official SimMIM checkpoint: its tensors "
            f"({name_keys(sorted(state))}) are not an official ViT, Swin or SwinV2."
        )
    return checkpoint
