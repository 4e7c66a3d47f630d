"""Dataclass fields as command-line flags: each parameter is defined once, with its flag, help,
type and choices in the field's metadata, and argparse groups are made from those fields."""
from __future__ import annotations

import argparse
from dataclasses import MISSING, field, fields


def param(default, help: str, *, type=None, choices=None, nargs=None, group: str = "",
          flag: str = "", dest: str = "", **meta):
    """A dataclass field that is also a command-line flag (`--field-name` unless `flag`)."""
    md = dict(help=help, type=type, choices=choices, nargs=nargs, group=group, flag=flag,
              dest=dest, **meta)
    if isinstance(default, (list, dict, set)):   # mutable: a fresh copy per instance
        return field(default_factory=default.copy, metadata=md)
    return field(default=default, metadata=md)


def flag_of(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def dest_of(f) -> str:
    return f.metadata.get("dest") or f.name


def cli_fields(cls, skip=()):
    return [f for f in fields(cls) if "help" in f.metadata and f.name not in skip]


def default_of(f):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def add_arguments(parser: argparse.ArgumentParser, cls, *, skip=(), suppress: bool = False,
                  titles: dict | None = None):
    """Add one flag per field of `cls` (in argument groups named by the fields' `group`).

    With `suppress`, absent flags leave no attribute (to overlay given flags on a base)."""
    groups = {}
    for f in cli_fields(cls, skip):
        md = f.metadata
        name = md["group"]
        if name not in groups:
            groups[name] = parser.add_argument_group((titles or {}).get(name, name)) if name else parser
        default = default_of(f)
        kw = dict(dest=dest_of(f), default=argparse.SUPPRESS if suppress else default)
        if md["type"] is not bool:
            kw["metavar"] = f.name.upper()
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        hint = "" if default in (None, "", (), []) or isinstance(default, bool) else f" (default {shown})"
        if md["type"] is bool:
            kw.update(action="store_true")
        else:
            kw.update(type=md["type"] or str)
            if md["choices"]:
                kw["choices"] = md["choices"]
            if md["nargs"]:
                kw["nargs"] = md["nargs"]
        groups[name].add_argument(flag_of(f), help=md["help"] + hint, **kw)


def given(ns: argparse.Namespace, cls, skip=()) -> dict:
    """The values of `cls`'s fields present in the parsed namespace, by field name."""
    out = {}
    for f in cli_fields(cls, skip):
        if hasattr(ns, dest_of(f)):
            out[f.name] = getattr(ns, dest_of(f))
    return out
