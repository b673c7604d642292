"""Typed settings, once for the whole project: dataclasses whose fields carry their help text, read
from YAML and `key=value` overrides, every value checked.

    @dataclass
    class Mine:
        steps: int = setting(10, "how many steps")
    cfg = build(Mine, merge(yaml_dict, parse_overrides(["steps=3"])))
    print("\n".join(help_lines(Mine)))

An unknown key, in the YAML or on the command line, is an error naming the known ones. Values on
the command line are YAML (`sft.taus=[2,3]`, `align.cache_features=false`). String values expand
`~` and `${VAR}` / `${VAR:-default}` (a recipe can name `${R1V_CACHE:-~/.cache/r1v}/world/vision`);
an unset variable without a default is an error.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import typing
from dataclasses import field

from r1v.errors import R1VError


def setting(default, help: str):
    """A dataclass field with its help text (lists, dicts and nested configs are copied per instance)."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand(text: str, where: str = "") -> str:
    """`${VAR}`, `${VAR:-default}` and a leading `~`, as a shell would."""
    def one(m):
        value = os.environ.get(m.group(1)) or m.group(2)
        if value is None:
            raise R1VError(f"setting {where}={text!r} names ${{{m.group(1)}}}, which is not set; export it, or "
                           f"write ${{{m.group(1)}:-DEFAULT}}")
        return value
    out = _VAR.sub(one, text)
    return os.path.expanduser(out) if out.startswith("~") else out


def build(cls, data: dict | None, where: str = "", *, base=None):
    """A `cls` instance from a (nested) dict; unknown keys and wrong types are R1VErrors. A nested
    section starts from its field's own default (`base`), not from its class's: overriding one
    key of a section keeps the section's other defaults."""
    data = data or {}
    if not isinstance(data, dict):
        raise R1VError(f"{where.rstrip('.') or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    inst = copy.deepcopy(base) if base is not None else cls()
    for key, value in data.items():
        if key not in known:
            raise R1VError(f"unknown setting '{where}{key}'; known: {', '.join(known)}")
        if dataclasses.is_dataclass(hints[key]):
            setattr(inst, key, build(hints[key], value, f"{where}{key}.", base=getattr(inst, key)))
        else:
            setattr(inst, key, _convert(hints[key], value, f"{where}{key}"))
    return inst


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where + ".")
    if origin in (list, typing.List):  # noqa: UP006
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise R1VError(f"setting {where} expects a list, got {value!r}")
        return [_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if tp is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            number = float(value)  # YAML 1.1 reads "2e-3" (no dot) as a string
            if not math.isfinite(number):  # no setting here means anything by nan or inf
                raise R1VError(f"setting {where}={value!r} must be a finite number")
            return number
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if tp is str and isinstance(value, (str, int, float)):
            return expand(str(value), where)
        raise ValueError
    except ValueError:
        raise R1VError(f"setting {where}={value!r} is not a {getattr(tp, '__name__', tp)}") from None


def parse_overrides(pairs: list[str]) -> dict:
    """["grpo.steps=10", "sft.taus=[2,5]"] -> {"grpo": {"steps": 10}, "sft": {"taus": [2, 5]}}."""
    import yaml

    out: dict = {}
    for kv in pairs:
        if "=" not in kv:
            hint = f"; a run folder is out={kv}" if "/" in kv else ""
            raise R1VError(f"overrides are key=value (e.g. grpo.steps=10), got {kv!r}{hint}")
        key, raw = kv.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, last = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise R1VError(f"override {kv!r}: {p} is a setting, not a section")
        node[last] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def help_lines(cls, prefix: str = "") -> list[str]:
    """`key=default  help` for every setting, nested keys dotted (for --help). `cls`: a config class
    or an instance (a nested section shows its field's own defaults)."""
    obj = cls() if isinstance(cls, type) else cls
    lines = []
    for f in dataclasses.fields(obj):
        default = getattr(obj, f.name)
        if dataclasses.is_dataclass(default):
            lines.append(f"  {prefix}{f.name}.*: {f.metadata.get('help', '')}")
            lines += help_lines(default, f"{prefix}{f.name}.")
        else:
            shown = default if not isinstance(default, list) or len(str(default)) < 40 else "[...]"
            lines.append(f"  {f'{prefix}{f.name}={shown}':<40} {f.metadata.get('help', '')}")
    return lines
