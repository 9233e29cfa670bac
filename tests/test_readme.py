"""README: the walkthrough's config, response and shown output are what the code really does."""

import os
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()


def block_after(marker: str, fence: str) -> str:
    return README.split(marker, 1)[1].split(f"```{fence}\n", 1)[1].split("```", 1)[0]


def test_the_walkthrough_try_output_is_exactly_what_try_prints(tmp_path):
    (tmp_path / "response.json").write_text(block_after("Say your platform answers", "json"))
    (tmp_path / "my.yaml").write_text(block_after("write `my.yaml`", "yaml"))
    console = block_after("See exactly what it produces", "console").splitlines()
    command = next(line for line in console if line.startswith("$ metrics-bridge try"))
    shown = console[console.index(command) + 1 :]
    result = subprocess.run(
        [sys.executable, "-m", "exporter", *command.split()[2:]], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PLATFORM_TOKEN": "t"}, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == shown[:-3]
    assert result.stderr.splitlines() == shown[-3:]


def test_the_walkthrough_config_passes_check(tmp_path):
    (tmp_path / "my.yaml").write_text(block_after("write `my.yaml`", "yaml"))
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "--config", "my.yaml"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PLATFORM_TOKEN": "t"}, timeout=60,
    )
    assert result.stdout.strip() == "my.yaml: OK — 1 target(s), 4 metric name(s)"


def test_the_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one():
    quick = README.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(quick) == 2
    assert "metrics-bridge demo" in quick[0]
    test_command = quick[1].split("#")[0].strip()
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert test_command in ci
