"""README: followed literally by a newcomer's terminal, every console block prints what the README shows.

A copy of the repository (its tracked files, as they are in the work tree) gets a fresh virtualenv from the quick
start's own command, once per test session; every `$ command` of every console block then runs in bash in that copy,
with the shell state the README built up (`. .venv/bin/activate`, `export`), and its output (stdout and stderr, as a
terminal shows them) is compared with the lines the README prints under it. Only what must vary is masked, each
mask named where it is used: sample values of the live demo, and the ports (the README's 9877 and 8000 become free
loopback ports, found from the servers' own logs or by binding port 0). A command after a background one is retried
until its output matches or a deadline passes, as a reader who runs it too early would run it again. pip runs as
this machine configures it, as in tests/test_dockerfile.py (its cache makes the install a matter of seconds to a
minute).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DEADLINE = 40.0  # seconds a command after a background one may take to print what the README shows


def sections(text: str) -> dict[str, str]:
    """`## heading` → the text under it."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def fenced(text: str, fence: str) -> list[str]:
    """The bodies of the ```fence blocks of a text, in order."""
    return re.findall(rf"^```{fence}\n(.*?)^```", text, flags=re.M | re.S)


def block_after(marker: str, fence: str) -> str:
    return README.split(marker, 1)[1].split(f"```{fence}\n", 1)[1].split("```", 1)[0]


@dataclass
class Command:
    """One `$ line` of a console block and the lines the README prints under it."""

    line: str
    shown: list[str]

    @property
    def background(self) -> bool:
        return bool(re.search(r"(?<!&)&\s*(#.*)?$", self.line))

    @property
    def foreground_text(self) -> str:
        return re.sub(r"\s*&\s*(#.*)?$", "", self.line) if self.background else self.line

    @property
    def changes_the_shell(self) -> bool:
        return self.line.startswith((". ", "source ", "export ", "cd "))


def commands(block: str) -> list[Command]:
    found: list[Command] = []
    for line in block.rstrip("\n").splitlines():
        if line.startswith("$ "):
            found.append(Command(line[2:], []))
        else:
            assert found, f"console block starts with output, not a command: {line!r}"
            found[-1].shown.append(line)
    return found


Mask = Callable[[str], str]


def sample_values(text: str) -> str:
    """Mask the value of each exposition sample (the live demo's values drift and its counters grow)."""
    return re.sub(r"^([a-zA-Z_:][\w:]*(?:\{.*\})?) \S+$", r"\1 <value>", text, flags=re.M)


@dataclass
class Terminal:
    """A reader's shell in the copy: commands run in bash with the state the README built up so far."""

    cwd: Path
    env: dict[str, str]
    state: list[str] = field(default_factory=list)
    substitutions: dict[str, str] = field(default_factory=dict)
    background: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)
    servers_started: bool = False  # after a background server starts, a reader may have to run a command again

    def script(self, text: str) -> str:
        for shown, actual in self.substitutions.items():
            text = text.replace(shown, actual)
        return "\n".join([*self.state, text])

    def output(self, text: str) -> str:
        result = subprocess.run(
            ["bash", "-c", self.script(text)], cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=60,
        )
        return result.stdout

    def start(self, text: str) -> Path:
        """Start a background command (its output goes to a log file, as a terminal would interleave it)."""
        log = self.cwd / f"background-{len(self.background)}.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                ["bash", "-c", self.script(text)], cwd=self.cwd, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((process, log))
        return log

    def stop(self) -> None:
        for process, _ in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, log in self.background:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.background.clear()

    def run_block(self, block: str, masks: tuple[Mask, ...] = (), listen: Optional[str] = None) -> int:
        """Run every command of a console block, comparing outputs; return how many outputs were compared."""
        compared = 0
        for command in commands(block):
            if command.changes_the_shell:
                assert self.output(command.line) == "".join(line + "\n" for line in command.shown)
                self.state.append(command.line)
                continue
            if command.background:
                assert not command.shown, f"a background command prints nothing in the README: {command.line}"
                self.start_server(command.foreground_text, listen)
                continue
            expected = mask("\n".join(command.shown) + "\n" if command.shown else "", masks)
            deadline = time.monotonic() + (DEADLINE if self.servers_started else 0)
            while True:
                actual = mask(self.output(command.line), masks)
                if actual == expected or time.monotonic() > deadline:
                    break
                time.sleep(0.2)  # a reader running it again; the deadline is the condition's
            assert actual == expected, f"$ {command.line}\n--- README shows:\n{expected}--- the terminal printed:\n{actual}"
            compared += 1
        return compared

    def start_server(self, text: str, listen: Optional[str]) -> None:
        """Start a background command; a bridge listens on a free port, found from its log, for the README's 9877."""
        bridge = re.search(r"\bmetrics-bridge (run|demo)\b", text) is not None
        log = self.start(text + (f" {listen} 127.0.0.1:0" if bridge and listen else ""))
        self.servers_started = True
        if bridge:
            port = wait_for(lambda: re.search(r"serving metrics on https?://127\.0\.0\.1:(\d+)/metrics", log.read_text()), log)
            self.substitutions["localhost:9877"] = f"localhost:{port.group(1)}"


def wait_for(condition: Callable[[], Optional[re.Match[str]]], log: Path) -> re.Match[str]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {DEADLINE}s; the log says:\n{log.read_text()[-3000:]}")


def mask(text: str, masks: tuple[Mask, ...]) -> str:
    for each in masks:
        text = each(text)
    return text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quick_start() -> list[str]:
    return fenced(sections(README)["Quick start"], "sh")[0].strip().splitlines()


def listen_flag() -> str:
    """The bridge's listen flag, as --help spells it (the exporter-toolkit spelling once it exists)."""
    return "--web.listen-address" if "--web.listen-address" in (ROOT / "exporter" / "cli.py").read_text() else "--listen"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository with `.venv` made by the quick start's own first command (up to the demo)."""
    copy = tmp_path_factory.mktemp("clone")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    setup, demo = quick_start()[0].split("#")[0].strip().rsplit(" && ", 1)
    assert demo == "metrics-bridge demo"
    env = {**newcomer_env(), **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}  # pip as configured here
    result = subprocess.run(["bash", "-c", setup], cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return copy


def newcomer_env() -> dict[str, str]:
    """The environment of a fresh terminal: no virtualenv active, nothing of this test run's."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_CERT", "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK")
    env = {k: v for k, v in os.environ.items() if k in keep}
    venv_bin = os.environ.get("VIRTUAL_ENV")
    if venv_bin:
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(venv_bin))
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(ROOT)))
    return env


@pytest.fixture
def terminal(clone: Path) -> Iterator[Terminal]:
    opened = Terminal(clone, newcomer_env())
    yield opened
    opened.stop()


def test_the_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one():
    quick = quick_start()
    assert len(quick) == 2
    assert quick[0].split("#")[0].strip().endswith("metrics-bridge demo")
    test_command = quick[1].split("#")[0].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_metrics_bridge_is_callable_after_the_quick_start_only_once_activated(clone: Path):
    fresh = Terminal(clone, newcomer_env())
    assert "command not found" in fresh.output("metrics-bridge --version")
    fresh.state.append(". .venv/bin/activate")
    assert fresh.output("metrics-bridge --version").startswith("metrics-bridge ")
    assert fresh.output("command -v metrics-bridge").strip() == str(clone / ".venv" / "bin" / "metrics-bridge")


def test_the_quick_start_console_shows_what_the_demo_serves(terminal: Terminal):
    terminal.state.append(". .venv/bin/activate")  # the quick start's first command activated it in its terminal
    terminal.start_server("metrics-bridge demo", listen_flag())
    (block,) = fenced(sections(README)["Quick start"], "console")
    assert terminal.run_block(block, masks=(sample_values,)) == 2


def test_the_walkthrough_runs_to_the_end_printing_what_the_readme_shows(terminal: Terminal):
    (terminal.cwd / "response.json").write_text(block_after("Say your platform answers", "json"))
    (terminal.cwd / "my.yaml").write_text(block_after("write `my.yaml`", "yaml"))
    port = free_port()  # for the README's 8000: the stand-in web server prints nothing to find it by
    terminal.substitutions.update({"http.server 8000": f"http.server {port}", "127.0.0.1:8000": f"127.0.0.1:{port}"})
    blocks = fenced(sections(README)["A 5-minute walkthrough: your own API"], "console")
    assert len(blocks) == 4
    compared = sum(terminal.run_block(block, listen=listen_flag()) for block in blocks)
    assert compared == 7


def test_every_console_block_of_the_readme_is_run_by_a_test():
    run = {"Quick start": 1, "A 5-minute walkthrough: your own API": 4}
    found = {title: len(fenced(text, "console")) for title, text in sections(README).items() if fenced(text, "console")}
    assert found == run


DOCS = ROOT / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text()


def test_the_explain_example_in_the_configuration_docs_is_what_try_prints(tmp_path, monkeypatch, capsys):
    from exporter.cli import main

    (tmp_path / "response.json").write_text(block_after("Say your platform answers", "json"))
    config = block_after("write `my.yaml`", "yaml").replace("- each: items\n", "- each: item\n", 1)
    (tmp_path / "my.yaml").write_text(config)
    monkeypatch.chdir(tmp_path)
    assert main(["try", "--config", "my.yaml", "--target", "platform-pods", "--input", "response.json"]) == 0
    shown = CONFIGURATION.split("walkthrough config with `- each: item`", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert capsys.readouterr().err == shown


def test_the_mapping_example_in_the_configuration_docs_is_a_valid_mapping():
    from exporter.config import parse_config

    (example,) = [b for b in fenced(CONFIGURATION, "yaml") if b.startswith("mappings:")]
    indented = "".join(f"    {line}\n" for line in example.splitlines())
    config = parse_config(f"targets:\n  - name: t\n    url: http://127.0.0.1:1/\n{indented}")
    assert [m.name for m in config.targets[0].mappings[0].metrics] == ["container_cpu_usage_cores"]


def test_the_docs_index_links_every_page_and_every_link_resolves():
    index = (DOCS / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", index)
    for link in links:
        assert (DOCS / link).exists(), link
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages <= {Path(link).name for link in links}, pages - {Path(link).name for link in links}
