"""The layers of DESIGN.md's "Layout inside engine/" hold: pyproject.toml [tool.importlinter].

A change that imports upward (the store importing policy, anything outside engine.intake
importing the fast path) or closes an import cycle fails here, naming the import.
"""

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "3 kept, 0 broken" in report
