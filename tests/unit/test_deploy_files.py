"""The deployment files in docs/deploy/ and the links of the documentation hold, without network.

A user copies these files as they are: a unit key systemd ignores, a path the image build cannot
find, or a link to a page that moved is what they would meet first.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from engine.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
UNIT = DEPLOY / "suture.service"
CONTAINERFILE = DEPLOY / "Containerfile"
COMPOSE = DEPLOY / "compose.yaml"
#: Two replicas on one PostgreSQL (docs/replicas.md).
COMPOSE_REPLICAS = DEPLOY / "compose.replicas.yaml"
CONFIG_PATH = "/etc/suture/config.yaml"


def _unit() -> configparser.ConfigParser:
    # strict=False: systemd allows a key more than once; no interpolation: `$MAINPID` is systemd's.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_runs_the_daemon_as_a_hardened_dedicated_user() -> None:
    """The unit starts `suture serve` on /etc/suture as user suture, reloads on SIGHUP, restarts."""
    service = _unit()["Service"]
    assert service["User"] == "suture"
    assert service["ExecStart"] == f"/usr/local/bin/suture serve --config {CONFIG_PATH}"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "read-only"
    assert service["PrivateTmp"] == "yes"
    assert service["StateDirectory"] == "suture"
    assert "/var/lib/suture" in service["ReadWritePaths"].split()
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


def test_unit_says_why_home_stays_readable() -> None:
    """ProtectHome=read-only carries the reason: the daemon reads its SSH key there."""
    text = UNIT.read_text()
    comment = text[: text.index("ProtectHome=")].rsplit("\n\n", 1)[-1]
    assert "SSH key" in comment


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a warning (skipped where it is absent)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (CI does not install systemd)")
    text = UNIT.read_text()
    binary = "/usr/local/bin/suture"
    if not Path(binary).exists():
        # verify checks that ExecStart exists: point it at the suture this test runs with.
        installed = shutil.which("suture")
        if installed is None:
            pytest.skip("no suture executable for systemd-analyze verify to find")
        text = text.replace(binary, installed)
    unit = tmp_path / "suture.service"
    unit.write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if "suture.service" in line]
    assert done.returncode == 0 and not said, done.stdout + done.stderr


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_containerfile_copies_only_paths_that_exist() -> None:
    """Every COPY source is a path of the repository (the build context is its root)."""
    copies = [args for word, args in _instructions(CONTAINERFILE) if word == "COPY"]
    assert copies
    for args in copies:
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"


def test_containerfile_runs_the_daemon_unprivileged_on_its_config() -> None:
    """python:3.11-slim, installed with pip, a non-root user, serve on the copied config."""
    steps = _instructions(CONTAINERFILE)
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert any(word == "RUN" and "pip install" in args and "'.[postgres]'" in args for word, args in steps)
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    copied = {shlex.split(args)[-1] for word, args in steps if word == "COPY"}
    assert CONFIG_PATH in copied
    command = " ".join(args for word, args in steps if word in ("ENTRYPOINT", "CMD"))
    assert "serve" in command and CONFIG_PATH in command


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_REPLICAS], ids=lambda p: p.name)
def test_compose_builds_from_the_repository_and_checks_readiness(path: Path) -> None:
    """Each compose file builds the Containerfile, mounts files that exist, waits on /readyz and postgres."""
    compose = yaml.safe_load(path.read_text())
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:15"
    suture = services["suture"]
    context = (path.parent / suture["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / suture["build"]["dockerfile"]).resolve() == CONTAINERFILE
    assert suture["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(suture["healthcheck"]["test"])
    named = set(compose.get("volumes") or {})
    for volume in suture["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            assert (path.parent / source).exists(), f"volume {volume}: {source} does not exist"
        else:
            assert source in named, f"volume {volume}: {source} is not declared under volumes:"
    mounted = {v.split(":")[1]: v.split(":")[0] for v in suture["volumes"]}
    assert CONFIG_PATH in mounted


@pytest.mark.parametrize(
    ("name", "scheme"), [("config.yaml", "sqlite:"), ("compose.config.yaml", "postgresql+psycopg:")]
)
def test_container_configs_load_and_need_an_api_token(
    name: str, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image's and compose's config.yaml are valid; listening beyond loopback, they need a token."""
    monkeypatch.setenv("SUTURE_API_OPS", "x" * 32)
    config = load_config(DEPLOY / name)
    config.resolve_secrets()
    assert config.database.url.startswith(scheme)
    assert config.server.host == "0.0.0.0"
    assert [token.token_env for token in config.access.tokens] == ["SUTURE_API_OPS"]


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_REPLICAS], ids=lambda p: p.name)
def test_compose_mounts_its_postgres_config(path: Path) -> None:
    """The config compose mounts is the one whose database is the compose file's postgres service."""
    suture = yaml.safe_load(path.read_text())["services"]["suture"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in suture["volumes"]}
    config = yaml.safe_load((path.parent / mounted[CONFIG_PATH]).read_text())
    assert "@postgres:5432/" in config["database"]["url"]


# ------------------------------------------------------------------------------------------ links

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where links are links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose_lines(path):
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _prose_lines(path: Path) -> list[str]:
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M).splitlines()


def _links() -> list[tuple[Path, str]]:
    return [(page, target) for page in DOCS for target in LINK.findall(_prose(page.read_text()))]


def test_the_pages_have_links_to_check() -> None:
    """The README links the docs pages (the split README is reachable from its first page)."""
    targets = {target for page, target in _links() if page.name == "README.md"}
    for page in ("concepts", "reference", "alert-sources", "targets", "operations"):
        assert f"docs/{page}.md" in targets


@pytest.mark.parametrize(("page", "target"), _links(), ids=lambda value: str(value).rsplit("/", 1)[-1])
def test_every_relative_link_points_at_a_file_that_exists(page: Path, target: str) -> None:
    """A relative link in README.md or docs/ names a file (and heading) that exists."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target):
        return  # http:, https:, mailto: are not files of the repository
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.exists(), f"{page.relative_to(ROOT)}: link {target}: {file} does not exist"
    if anchor and file.suffix == ".md":
        assert anchor in _anchors(file), f"{page.relative_to(ROOT)}: link {target}: no such heading"


def test_readme_starts_with_the_two_commands() -> None:
    """The README's first two commands stay as CI and a fresh clone run them."""
    blocks = re.findall(r"^```sh\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    assert blocks[:2] == [
        "python3 -m pip install -e . && suture serve --config config.yaml\n",
        "bash .ci/test\n",
    ]


def _yaml_blocks() -> list[tuple[str, str]]:
    return [
        (f"{page.name}:{number}", block)
        for page in DOCS
        for number, block in enumerate(re.findall(r"^```yaml\n(.*?)^```", page.read_text(), re.S | re.M))
    ]


@pytest.mark.parametrize(("where", "block"), _yaml_blocks(), ids=[where for where, _ in _yaml_blocks()])
def test_every_documented_config_code_and_playbook_is_valid(where: str, block: str) -> None:
    """A config.yaml, code or playbook snippet in the docs loads: no key there that Suture lacks."""
    from engine.access import hash_password
    from engine.config import Config
    from engine.models import Code, Playbook

    # The docs shorten a password hash; a real one stands in for it.
    block = block.replace('"scrypt:16384:8:1:..."', f'"{hash_password("example", n=2)}"')
    data = yaml.safe_load(block)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "code" in data[0]:
        for code in data:
            Code.model_validate(code)
    elif isinstance(data, dict) and "steps" in data:
        Playbook.model_validate(data)
    elif isinstance(data, dict) and set(data) <= set(Config.model_fields):
        Config.model_validate(data)
    else:
        assert isinstance(data, dict) and not set(data) & {"database", "server", "ssh"}, where
