"""`suture access hash`: credentials for `access:` in config.yaml."""

from __future__ import annotations

import sys

import click

from engine.cli.common import handle_errors
from engine.errors import InvalidArgument


@click.group()
def access() -> None:
    """Credentials for the API (config.yaml `access:`)."""


@access.command("hash")
@handle_errors
def access_hash() -> None:
    """Read a password on stdin, print its hash for access.users[].password_hash."""
    from engine.access import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        raw = sys.stdin.buffer.read()
        try:
            password = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("the password on stdin is not UTF-8") from None
        # `echo pw | suture access hash` adds a newline that is not part of the password.
        password = password.removesuffix("\n").removesuffix("\r")
    if not password:
        raise InvalidArgument("the password is empty")
    click.echo(hash_password(password))
