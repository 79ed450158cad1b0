"""Value parsing (sizes, durations, booleans) and `Section`, a key-tracking reader over a mapping.

Every read goes through `Section`, which knows the key's path for error messages
(``listeners[0].port: expected ...``) and remembers which keys were read so the loader can
report the ones it does not implement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from homeserver.config.errors import ConfigError

T = TypeVar("T")

_SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_UNITS = {
    "ms": 1,
    "s": 1000,
    "m": 60 * 1000,
    "h": 60 * 60 * 1000,
    "d": 24 * 60 * 60 * 1000,
    "w": 7 * 24 * 60 * 60 * 1000,
    "y": 365 * 24 * 60 * 60 * 1000,
}
_NUMBER_SUFFIX = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_TRUE = frozenset({"true", "yes", "on", "1", "y"})
_FALSE = frozenset({"false", "no", "off", "0", "n"})


def parse_size(value: Any) -> int:
    """Bytes from an int or a string with an optional K/M/G/T suffix (powers of 1024), e.g. "50M".

    Raises ValueError. Synapse's convention; lower-case suffixes and a trailing "B"/"iB"
    ("10MiB") are accepted too.
    """
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative size")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if not isinstance(value, str):
        raise ValueError("not a size")
    match = _NUMBER_SUFFIX.match(value)
    if not match:
        raise ValueError("not a size")
    number, suffix = match.groups()
    suffix = suffix.upper()
    if suffix.endswith("IB"):
        suffix = suffix[:-2]
    elif suffix.endswith("B") and len(suffix) <= 2:
        suffix = suffix[:-1]
    if suffix and suffix not in _SIZE_UNITS:
        raise ValueError(f"unknown size suffix {suffix!r}")
    return int(float(number) * _SIZE_UNITS.get(suffix, 1))


def parse_duration(value: Any) -> int:
    """Milliseconds from an int (already ms) or a string "<n><unit>", unit one of ms s m h d w y.

    A bare number string means milliseconds (as in Synapse). Raises ValueError.
    """
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative duration")
        return value
    if isinstance(value, float) and value >= 0 and math.isfinite(value):
        return int(value)
    if not isinstance(value, str):
        raise ValueError("not a duration")
    match = _NUMBER_SUFFIX.match(value)
    if not match:
        raise ValueError("not a duration")
    number, suffix = match.groups()
    if suffix and suffix not in _DURATION_UNITS:
        raise ValueError(f"unknown duration suffix {suffix!r}")
    return int(float(number) * _DURATION_UNITS.get(suffix, 1))


def parse_bool(value: Any) -> bool:
    """A YAML boolean, or one of the strings true/false/yes/no/on/off/1/0. Raises ValueError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValueError("not a boolean")


def join_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


class Section:
    """A mapping from the config file being read.

    Reading a key (whether present or not) marks it as known; `unread_paths()` lists the
    keys present in the file that nothing asked for, including those of nested sections
    obtained through `section()` / `sections()`.
    """

    __slots__ = ("_children", "_data", "_read", "path")

    def __init__(self, data: Mapping[str, Any] | None, path: str = "") -> None:
        self._data: Mapping[str, Any] = data or {}
        self.path = path
        self._read: set[str] = set()
        self._children: list[Section] = []

    # -- generic access -------------------------------------------------------------------

    def key_path(self, key: str) -> str:
        return join_path(self.path, key)

    def has(self, key: str) -> bool:
        """Whether the key is present with a non-null value (marks it as read)."""
        self._read.add(key)
        return self._data.get(key) is not None

    def is_explicit_null(self, key: str) -> bool:
        """Whether the key is present with a null value (``key:`` or ``key: null``)."""
        self._read.add(key)
        return key in self._data and self._data[key] is None

    def raw(self, key: str, default: Any = None) -> Any:
        """The value as found (None counts as absent), marking the key as read."""
        self._read.add(key)
        value = self._data.get(key)
        return default if value is None else value

    def mark_read(self, *keys: str) -> None:
        """Accept keys without interpreting them (known but not implemented)."""
        self._read.update(keys)

    def error(self, key: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"expected {expected}, got {value!r}", self.key_path(key))

    def convert(self, key: str, default: T, expected: str, fn: Callable[[Any], T]) -> T:
        """Apply `fn` to the value if present; ValueError/TypeError become a ConfigError."""
        value = self.raw(key)
        if value is None:
            return default
        try:
            return fn(value)
        except (ValueError, TypeError) as e:
            raise self.error(key, expected, value) from e

    # -- typed readers --------------------------------------------------------------------

    def get_str(self, key: str, default: str) -> str:
        value = self.get_opt_str(key)
        return default if value is None else value

    def get_opt_str(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, "a string", value)
        return str(value)

    def get_bool(self, key: str, default: bool) -> bool:
        return self.convert(key, default, "true or false", parse_bool)

    def get_int(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.get_opt_int(key, minimum=minimum, maximum=maximum)
        return default if value is None else value

    def get_opt_int(self, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        expected = _int_expectation(minimum, maximum)
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value.strip())
        if (
            number is None
            or (minimum is not None and number < minimum)
            or (maximum is not None and number > maximum)
        ):
            raise self.error(key, expected, value)
        return number

    def get_float(self, key: str, default: float, *, minimum: float | None = None) -> float:
        value = self.raw(key)
        if value is None:
            return default
        expected = "a number" if minimum is None else f"a number >= {minimum:g}"
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (ValueError, TypeError) as e:
            raise self.error(key, expected, value) from e
        if not math.isfinite(number) or (minimum is not None and number < minimum):
            raise self.error(key, expected, value)
        return number

    def get_size(self, key: str, default: int) -> int:
        return self.convert(key, default, 'a size in bytes such as 1024, "512K", "50M" or "1G"', parse_size)

    def get_duration(self, key: str, default: int) -> int:
        return self.convert(
            key, default, 'a duration such as 500 (ms), "30s", "5m", "1h", "7d"', parse_duration
        )

    def get_opt_duration(self, key: str) -> int | None:
        value: int | None = self.convert(
            key, None, 'a duration such as 500 (ms), "30s", "5m", "1h", "7d"', parse_duration
        )
        return value

    def get_choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            raise self.error(key, "one of " + ", ".join(repr(c) for c in choices), value)
        return value

    def get_str_list(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise self.error(key, "a list of strings", value)
        out: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"expected a string, got {item!r}", join_path(self.key_path(key), index))
            out.append(item)
        return tuple(out)

    # -- nesting --------------------------------------------------------------------------

    def section(self, key: str) -> Section:
        """The nested mapping at `key` (empty when absent or null)."""
        value = self.raw(key)
        if value is not None and not isinstance(value, Mapping):
            raise self.error(key, "a mapping", value)
        child = Section(value, self.key_path(key))
        self._children.append(child)
        return child

    def sections(self, key: str) -> Iterator[Section]:
        """Each mapping of the list at `key` (nothing when absent or null)."""
        value = self.raw(key)
        if value is None:
            return
        if not isinstance(value, list | tuple):
            raise self.error(key, "a list", value)
        for index, item in enumerate(value):
            path = join_path(self.key_path(key), index)
            if not isinstance(item, Mapping):
                raise ConfigError(f"expected a mapping, got {item!r}", path)
            child = Section(item, path)
            self._children.append(child)
            yield child

    def keys(self) -> list[str]:
        return [str(k) for k in self._data]

    def read_keys(self) -> frozenset[str]:
        return frozenset(self._read)

    def unread_paths(self, ignore: frozenset[str] = frozenset()) -> list[str]:
        """Paths of present keys nobody read, depth first (children after their parent's keys)."""
        out = [self.key_path(str(k)) for k in self._data if k not in self._read and k not in ignore]
        for child in self._children:
            out.extend(child.unread_paths())
        return out


def _int_expectation(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer between {minimum} and {maximum}"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"
