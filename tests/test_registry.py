"""Tests for lightly_simmim.registry: discovery, loading, errors, caching.

Third-party plugins are real (if tiny) distributions installed by the
``install_plugin`` fixture, so discovery goes through ``importlib.metadata`` exactly as
it does for an installed package.
"""

from __future__ import annotations

import importlib.metadata
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from lightly_simmim import registry
from lightly_simmim.registry import (
    DuplicatePluginWarning,
    PluginLoadError,
    PluginLoadWarning,
    UnknownComponentError,
)

# install_plugin(distribution, entry_points_txt, {module: source}) -> site folder
Installer = Callable[[str, str, dict[str, str]], Path]


GOOD_MODULE = """
class Thing:
    pass
"""


# Own components: declared in pyproject.toml, found like any third-party plugin.


def test_entry_points__own_components_declared() -> None:
    registry.refresh()
    assert list(registry.entry_points("heads")) == ["simmim"]
    assert "simmim" in registry.entry_points("losses")
    assert {"simmim", "mae", "byol"} <= set(registry.entry_points("transforms"))


def test_describe__own_components_without_import() -> None:
    rows = registry.describe("losses")
    assert ("simmim", "lightly-simmim", "lightly_simmim.loss:SimMIMLoss") in rows
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)


def test_get__own_loss_is_simmim_loss_class() -> None:
    from lightly_simmim.loss import SimMIMLoss

    assert registry.get("losses", "simmim") is SimMIMLoss
    # Full group names work as well as short ones.
    assert registry.get("lightly.losses", "simmim") is SimMIMLoss


def test_list_names__own_heads_losses_transforms() -> None:
    assert registry.list_names("heads") == ["simmim"]
    assert "simmim" in registry.list_names("losses")
    assert {"simmim", "mae", "byol"} <= set(registry.list_names("transforms"))


# Third-party distributions.


def test_get__fake_third_party_distribution(install_plugin: Installer) -> None:
    install_plugin(
        "fake-plugin",
        "[lightly.losses]\nfake = fake_plugin_mod:FakeLoss\n",
        {"fake_plugin_mod": "class FakeLoss:\n    pass\n"},
    )
    assert "fake" in registry.entry_points("lightly.losses")
    assert ("fake", "fake-plugin", "fake_plugin_mod:FakeLoss") in registry.describe(
        "losses"
    )
    loss_cls = registry.get("losses", "fake")
    assert loss_cls.__name__ == "FakeLoss"
    assert loss_cls.__module__ == "fake_plugin_mod"
    assert registry.items("losses")["fake"] is loss_cls


def test_list_names__fake_third_party_distribution(install_plugin: Installer) -> None:
    install_plugin(
        "fake-plugin",
        "[lightly.heads]\nfake = fake_plugin_mod:Thing\n",
        {"fake_plugin_mod": GOOD_MODULE},
    )
    assert "fake" in registry.list_names("heads")


def test_get__imports_only_the_requested_plugin(install_plugin: Installer) -> None:
    install_plugin(
        "fake-plugin",
        "[lightly.heads]\na = fake_mod_a:Thing\nb = fake_mod_b:Thing\n",
        {"fake_mod_a": GOOD_MODULE, "fake_mod_b": GOOD_MODULE},
    )
    registry.get("heads", "a")
    assert "fake_mod_a" in sys.modules
    assert "fake_mod_b" not in sys.modules


def test_get__loaded_object_is_cached(install_plugin: Installer) -> None:
    install_plugin(
        "fake-plugin",
        "[lightly.heads]\na = fake_mod_a:Thing\n",
        {"fake_mod_a": GOOD_MODULE},
    )
    first = registry.get("heads", "a")
    del sys.modules["fake_mod_a"]
    assert registry.get("heads", "a") is first
    assert "fake_mod_a" not in sys.modules  # served from the cache, not re-imported


# Broken plugins.


@pytest.fixture
def broken(install_plugin: Installer) -> None:
    install_plugin(
        "broken-plugin",
        """
        [lightly.heads]
        good = fake_good_mod:Thing
        raises = fake_raising_mod:Thing
        missing = fake_good_mod:DoesNotExist
        """,
        {
            "fake_good_mod": GOOD_MODULE,
            "fake_raising_mod": "raise RuntimeError('boom at import')\n",
        },
    )


def _messages(record: Iterable[warnings.WarningMessage]) -> str:
    return "\n".join(
        str(w.message) for w in record if issubclass(w.category, PluginLoadWarning)
    )


@pytest.mark.usefixtures("broken")
def test_items__broken_plugins_warn_and_are_skipped() -> None:
    with pytest.warns(PluginLoadWarning) as record:
        loaded = registry.items("heads")
    assert "good" in loaded
    assert "raises" not in loaded
    assert "missing" not in loaded
    messages = _messages(record)
    assert "'raises'" in messages
    assert "'lightly.heads'" in messages
    assert "broken-plugin" in messages
    assert "fake_raising_mod:Thing" in messages
    assert "RuntimeError: boom at import" in messages
    assert "'missing'" in messages
    assert "fake_good_mod:DoesNotExist" in messages
    assert "AttributeError" in messages


@pytest.mark.usefixtures("broken")
def test_list_names__broken_plugins_warn_and_are_skipped() -> None:
    with pytest.warns(PluginLoadWarning) as record:
        names = registry.list_names("heads")
    assert "good" in names
    assert "raises" not in names
    assert "missing" not in names
    assert "'raises'" in _messages(record)
    assert "'missing'" in _messages(record)
    # The failure is cached (the module is not re-executed) but still reported.
    with pytest.warns(PluginLoadWarning) as record:
        assert registry.list_names("heads") == names
    assert "'raises'" in _messages(record)


@pytest.mark.usefixtures("broken")
def test_get__broken_plugin_raises_plugin_load_error() -> None:
    with pytest.raises(PluginLoadError, match="'raises'") as info:
        registry.get("heads", "raises")
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.plugin == "raises"
    assert info.value.distribution == "broken-plugin"
    assert info.value.value == "fake_raising_mod:Thing"

    with pytest.raises(PluginLoadError, match="DoesNotExist") as info:
        registry.get("heads", "missing")
    assert isinstance(info.value.__cause__, AttributeError)

    # The healthy plugin of the same distribution is unaffected.
    assert registry.get("heads", "good").__name__ == "Thing"


# Unknown names and groups.


def test_get__unknown_name_lists_known_and_suggests_nearest() -> None:
    with pytest.raises(UnknownComponentError) as info:
        registry.get("losses", "simmin")
    error = info.value
    assert isinstance(error, KeyError)
    assert isinstance(error, ValueError)
    message = str(error)
    assert not message.startswith(("'", '"'))  # not KeyError's repr-quoting
    assert "'simmin'" in message
    assert "Did you mean 'simmim'?" in message
    assert "Known names:" in message
    assert error.suggestion == "simmim"
    assert "simmim" in error.known


def test_get__unknown_name_without_close_match_has_no_suggestion() -> None:
    with pytest.raises(UnknownComponentError, match="Known names") as info:
        registry.get("losses", "zzzzzzzz")
    assert info.value.suggestion is None
    assert "Did you mean" not in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda: registry.get("optimizers", "adamw"),
        lambda: registry.list_names("optimizers"),
        lambda: registry.items("lightly.optimizers"),
        lambda: registry.entry_points("loss"),
        lambda: registry.describe(""),
    ],
)
def test_resolve_group__unknown_group_raises_value_error(
    call: Callable[[], Any],
) -> None:
    with pytest.raises(ValueError, match="Valid groups") as info:
        call()
    for short, full in registry.GROUPS.items():
        assert repr(short) in str(info.value)
        assert repr(full) in str(info.value)


def test_entry_points__short_and_full_group_names_agree() -> None:
    for short, full in registry.GROUPS.items():
        assert registry.entry_points(short) == registry.entry_points(full)


# Caching and refresh.


def test_list_names__discovery_is_cached_until_refresh(
    install_plugin: Installer, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        "fake-plugin",
        "[lightly.heads]\na = fake_mod_a:Thing\n",
        {"fake_mod_a": GOOD_MODULE},
    )
    original = importlib.metadata.entry_points
    calls: list[str] = []

    def counting(**kwargs: Any) -> Any:
        if kwargs.get("group") == "lightly.heads":
            calls.append(kwargs["group"])
        return original(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    registry.refresh()
    registry.list_names("heads")
    registry.list_names("heads")
    registry.entry_points("heads")
    registry.get("heads", "a")
    assert len(calls) == 1
    registry.refresh()
    registry.list_names("heads")
    assert len(calls) == 2


def test_refresh__new_distribution_appears(install_plugin: Installer) -> None:
    site = install_plugin(
        "first-plugin",
        "[lightly.heads]\nearly = fake_mod_a:Thing\n",
        {"fake_mod_a": GOOD_MODULE},
    )
    assert "early" in registry.entry_points("heads")
    # Installed behind the registry's back (no refresh): the cached discovery misses it.
    info = site / "late_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: late-plugin\n")
    (info / "entry_points.txt").write_text("[lightly.heads]\nlate = fake_mod_a:Thing\n")
    assert "late" not in registry.entry_points("heads")
    registry.refresh()
    assert "late" in registry.entry_points("heads")


# Duplicate names.


def test_entry_points__duplicate_name_across_distributions_warns(
    install_plugin: Installer,
) -> None:
    install_plugin(
        "zzz-plugin",
        "[lightly.heads]\ndup = fake_mod_z:Thing\n",
        {"fake_mod_z": GOOD_MODULE},
    )
    install_plugin(
        "aaa-plugin",
        "[lightly.heads]\ndup = fake_mod_a:Thing\n",
        {"fake_mod_a": GOOD_MODULE},
    )
    with pytest.warns(DuplicatePluginWarning) as record:
        discovered = registry.entry_points("heads")
    message = str(record[0].message)
    assert "'dup'" in message
    assert "aaa-plugin" in message
    assert "zzz-plugin" in message
    # Deterministic: first by distribution name.
    assert discovered["dup"].value == "fake_mod_a:Thing"
    assert registry.get("heads", "dup").__module__ == "fake_mod_a"


def test_entry_points__duplicate_of_own_name_keeps_own(
    install_plugin: Installer,
) -> None:
    install_plugin(
        "aaa-plugin",
        "[lightly.losses]\nsimmim = fake_mod_a:Thing\n",
        {"fake_mod_a": GOOD_MODULE},
    )
    with pytest.warns(DuplicatePluginWarning, match="lightly-simmim"):
        discovered = registry.entry_points("losses")
    assert discovered["simmim"].value == "lightly_simmim.loss:SimMIMLoss"
