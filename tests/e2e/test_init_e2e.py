"""`suture init DIR` writes a working setup anywhere, from a clone and from the wheel alone.

The wheel test is the new user's first minutes: build the wheel, install it into a fresh
virtualenv (dependencies come from the system site-packages, so nothing is downloaded), then
that venv's `suture init`, `validate` and `serve` until /readyz answers, from a folder that is
not the clone, so nothing can be read from the repository by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner

from engine.cli.main import main
from tests.conftest import ROOT, free_port

SHIPPED_CODES = sorted(path.name for path in (ROOT / "codes").glob("*.yaml"))
SHIPPED_PLAYBOOKS = sorted(path.name for path in (ROOT / "playbooks").glob("*.yaml"))
#: What the wheel is built from: the project's sources, symlinks kept as they are in git.
SOURCES = ("pyproject.toml", "README.md", "config.yaml", "engine", "connectors", "codes", "playbooks")


def test_init_writes_a_site_that_validates_and_refuses_to_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(main, ["init", "sites/dc1"])
    assert first.exit_code == 0, first.output
    site = tmp_path / "sites" / "dc1"
    assert (site / "config.yaml").read_bytes() == (ROOT / "config.yaml").read_bytes()
    assert sorted(p.name for p in (site / "codes").iterdir()) == SHIPPED_CODES
    assert sorted(p.name for p in (site / "playbooks").iterdir()) == SHIPPED_PLAYBOOKS
    assert "suture validate --config sites/dc1/config.yaml" in first.stdout
    assert "suture serve --config sites/dc1/config.yaml" in first.stdout

    # From another folder: the catalog and database paths are relative to the config file.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    checked = runner.invoke(main, ["validate", "--config", str(site / "config.yaml")])
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith(f"ok: {_codes_in(ROOT / 'codes')} codes")

    # A second init keeps the user's edits and says which file stops it, in one line.
    (site / "config.yaml").write_text("# mine\n")
    again = runner.invoke(main, ["init", str(site)])
    assert again.exit_code == 1
    assert again.stderr.count("\n") == 1
    assert str(site / "config.yaml") in again.stderr
    assert "--force" in again.stderr
    assert "Traceback" not in again.output
    assert (site / "config.yaml").read_text() == "# mine\n"

    forced = runner.invoke(main, ["init", str(site), "--force"])
    assert forced.exit_code == 0, forced.output
    assert (site / "config.yaml").read_bytes() == (ROOT / "config.yaml").read_bytes()


def test_wheel_in_a_fresh_venv_inits_validates_and_serves(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True
    )
    python, suture = venv / "bin" / "python", venv / "bin" / "suture"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "SUTURE_CONFIG")}
    # The system pip, run by the venv's interpreter, installs into the venv.
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], tmp_path, env)
    where = _run([python, "-c", "import engine; print(engine.__file__)"], tmp_path, env).stdout
    assert where.startswith(str(venv)), where  # the wheel's engine, not the clone's

    home = tmp_path / "home"
    home.mkdir()
    site = tmp_path / "etc" / "suture"
    told = _run([suture, "init", str(site)], home, env).stdout
    assert f"suture serve --config {site / 'config.yaml'}" in told
    assert sorted(p.name for p in (site / "codes").iterdir()) == SHIPPED_CODES
    assert sorted(p.name for p in (site / "playbooks").iterdir()) == SHIPPED_PLAYBOOKS

    config = site / "config.yaml"
    port = free_port()
    shipped_server = "server: {host: 127.0.0.1, port: 8080}"
    assert shipped_server in config.read_text()
    config.write_text(
        config.read_text().replace(shipped_server, f"server: {{host: 127.0.0.1, port: {port}}}")
    )
    checked = _run([suture, "validate", "--config", str(config)], home, env).stdout
    assert checked.startswith(f"ok: {_codes_in(ROOT / 'codes')} codes")

    log = (tmp_path / "serve.log").open("wb")
    serving = subprocess.Popen(
        [suture, "serve", "--config", str(config)], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", serving, tmp_path / "serve.log")
        assert (site / "suture.db").exists()  # the database sits beside the config, not in the cwd
        assert not (home / "suture.db").exists()
        status = orjson.loads(_run([suture, "status", "--config", str(config), "--json"], home, env).stdout)
        assert status["paused"] is False and status["open_incidents"] == 0
        checked_up = orjson.loads(
            _run([suture, "doctor", "--config", str(config), "--json"], home, env).stdout
        )
        assert checked_up["ok"] is True, checked_up
        assert {"database", "catalog"} <= {check["check"] for check in checked_up["checks"]}
    finally:
        serving.terminate()
        serving.wait(timeout=15)
        log.close()


def _codes_in(folder: Path) -> int:
    return sum(
        line.startswith("- code:") for path in folder.glob("*.yaml") for line in path.read_text().splitlines()
    )


def _build_wheel(tmp_path: Path) -> Path:
    """`pip wheel` on a copy: building in the clone would leave build/ and egg-info behind."""
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)], tmp_path)
    (wheel,) = dist.glob("suture-*.whl")
    return wheel


def _run(
    args: list[object], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def _wait_ready(url: str, serving: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serving.poll() is not None:
            raise AssertionError(f"suture serve exited with {serving.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200:\n{log.read_text()}")
