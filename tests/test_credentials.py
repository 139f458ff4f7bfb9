"""The secret never shows; bad values fail at construction."""

from __future__ import annotations

import logging
import pickle

import pytest

from connex_async import Credentials


def test_secret_absent_from_repr_str_format() -> None:
    c = Credentials("my-key-123", "s3cr3t-value", label="desk-7")
    for text in (repr(c), str(c), f"{c}", f"{c!r}", repr([c]), repr({"c": c})):
        assert "s3cr3t-value" not in text
        assert "my-key-123" not in text
    assert "desk-7" in repr(c)


def test_secret_absent_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    c = Credentials("my-key-123", "s3cr3t-value")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("connex_async").debug("using %s %r", c, c)
    assert "s3cr3t-value" not in caplog.text


def test_not_picklable() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Credentials("k", "s"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"api_key": "", "secret": "s"}, "api_key"),
        ({"api_key": "   ", "secret": "s"}, "api_key"),
        ({"api_key": 123, "secret": "s"}, "api_key"),
        ({"api_key": "k", "secret": ""}, "secret"),
        ({"api_key": "k", "secret": None}, "secret"),
        ({"api_key": "k", "secret": b"s"}, "secret"),
        ({"api_key": " k", "secret": "s"}, "api_key"),
        ({"api_key": "k", "secret": "s\n"}, "secret"),
        ({"api_key": "k", "secret": "s", "label": ""}, "label"),
        ({"api_key": "k", "secret": "s", "limit_group": 5}, "limit_group"),
    ],
)
def test_bad_values_raise_value_error(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        Credentials(**kwargs)  # type: ignore[arg-type]
    assert "s\n" not in str(info.value)


def test_defaults_label_and_limit_group() -> None:
    a = Credentials("key-a", "s")
    assert a.label.startswith("key-") and "key-a" not in a.label
    assert a.limit_group == f"key:{a.digest}" and "key-a" not in a.limit_group and len(a.digest) == 32
    assert Credentials("k", "s", limit_group="shared").limit_group == "shared"
