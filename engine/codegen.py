"""Straight-line functions compiled from a list of field names, for the per-alert hot paths.

A loop over the fields costs several times what the same lines written out cost; written out by
hand, the lines drift from the model they copy. The source is built from field names checked to
be identifiers, never from input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import UnionType
from typing import Any, Union, get_args, get_origin


def compiled(name: str, source: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    """The function `name` defined by `source`, which sees `namespace`."""
    scope = dict(namespace)
    exec(compile(source, f"<generated {name}>", "exec"), scope)  # noqa: S102 - see the module docstring
    function: Callable[..., Any] = scope[name]
    return function


def identifiers(names: Iterable[str]) -> tuple[str, ...]:
    """`names`, each checked to be a plain identifier before it goes into generated source."""
    checked = tuple(names)
    for name in checked:
        if not name.isidentifier():
            raise ValueError(f"not an identifier: {name!r}")
    return checked


def admitted(annotation: Any) -> tuple[Any, ...]:
    """The types a field's annotation admits: the members of `X | None`, else the type itself."""
    return get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
