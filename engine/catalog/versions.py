"""The catalog as the versions the database keeps: plain values the store writes as given."""

from __future__ import annotations

from engine.catalog.loader import Catalog
from engine.models import CodeVersion, PlaybookVersion


def stored_versions(catalog: Catalog) -> tuple[list[PlaybookVersion], list[CodeVersion]]:
    """Every playbook version and code of `catalog`, for `Store.sync_catalog(*stored_versions(c))`."""
    playbooks = [
        PlaybookVersion(name, version, entry.sha256, entry.body)
        for (name, version), entry in sorted(catalog.playbooks.items())
    ]
    codes = [
        CodeVersion(entry.code.code, entry.sha256, entry.code.model_dump(mode="json", by_alias=True))
        for entry in catalog.codes
    ]
    return playbooks, codes
