"""The Dockerfile, read (no Docker engine here builds it): what the image promises."""

from __future__ import annotations

import re
import subprocess
import tomllib

from tests.deploy.chart import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()


def _stages() -> dict[str, str]:
    """Stage name -> its instructions (line continuations joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    stages: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = ""
        elif current and line.strip() and not line.lstrip().startswith("#"):
            stages[current] += line.strip() + "\n"
    return stages


def _workspace_members() -> list[str]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: list[str] = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        members += sorted(
            str(p.parent.relative_to(ROOT)) for p in ROOT.glob(f"{pattern}/pyproject.toml")
        )
    return members


def test_every_workspace_member_is_in_the_dependency_layer() -> None:
    """`uv sync --frozen` fails when a member of the lock file is missing from the context."""
    build = _stages()["build"]
    for member in _workspace_members():
        assert f"COPY {member}/pyproject.toml {member}/pyproject.toml" in build, member
    assert "COPY pyproject.toml uv.lock ./" in build


def test_build_installs_the_lock_without_dev_tools_as_wheels() -> None:
    build = _stages()["build"]
    assert "UV_FROZEN=1" in build  # the lock file decides, never a fresh resolve
    syncs = re.findall(r"uv sync[^\n]*", build)
    assert len(syncs) == 2
    assert all("--no-dev" in s for s in syncs)
    assert "--no-install-workspace" in syncs[0]
    assert "--no-editable" in syncs[1]
    # The data files that must ship inside the core package are checked at build time.
    assert "chargenet.core.signer_client._generated.signer_pb2_grpc" in build
    assert "ChargingEscrow.json" in build


def test_runtime_stage_is_slim_non_root_and_without_build_tools() -> None:
    stages = _stages()
    assert list(stages)[-1] == "runtime"
    runtime = stages["runtime"]
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert "COPY --from=build /opt/chargenet /opt/chargenet" in runtime
    for tool in ("apt-get install", "gcc", "build-essential", "uv sync", "/uv"):
        assert tool not in runtime, tool
    assert "pip uninstall" in runtime
    assert 'ENTRYPOINT ["chargenet"]' in runtime
    assert re.search(
        r"FROM python:\$\{PYTHON_VERSION\}-slim-\$\{DEBIAN_RELEASE\} AS runtime", DOCKERFILE
    )


def test_the_user_matches_the_charts_security_context() -> None:
    import yaml

    values = yaml.safe_load((ROOT / "helm" / "chargenet" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001
    assert values["podSecurityContext"]["runAsGroup"] == 10001
    assert "--uid 10001 --gid 10001" in _stages()["runtime"]


def test_dockerignore_sends_only_the_packages() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**"  # everything is out unless listed
    assert {"!pyproject.toml", "!uv.lock", "!libs/**", "!services/**"} <= set(lines)
    assert {"**/.venv", "**/node_modules", "**/__pycache__"} <= set(lines)


def test_the_data_files_the_image_needs_are_tracked_inside_the_core_package() -> None:
    """The image is built from a clean checkout: untracked artifacts would be missing there."""
    tracked = subprocess.run(
        ["git", "ls-files", "libs/core/chargenet/core"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "libs/core/chargenet/core/chain/compiled/ChargingEscrow.json" in tracked
    assert "libs/core/chargenet/core/signer_client/_generated/signer_pb2_grpc.py" in tracked
