"""config/streamer.service is a unit systemd accepts, and it says what the README promises."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

UNIT = ROOT / "config" / "streamer.service"


def unit_text(exec_start: str) -> str:
    """The shipped unit with ExecStart's program replaced (systemd checks it exists)."""
    text = UNIT.read_text(encoding="utf-8")
    return text.replace("/opt/streamer/.venv/bin/streamer", exec_start)


def parse(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text)
    return cp


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (.ci/run installs systemd)")
@pytest.mark.parametrize("broken", [False, True])
def test_systemd_accepts_the_unit(tmp_path: Path, broken: bool) -> None:
    streamer = Path(sys.executable).with_name("streamer")
    assert streamer.exists()
    text = unit_text(str(streamer))
    if broken:  # the check is real: a bad value is reported
        text = text.replace("LimitNOFILE=65536", "LimitNOFILE=lots")
    path = tmp_path / "streamer.service"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, timeout=60)
    ours = [line for line in proc.stderr.splitlines() if "streamer.service" in line]
    if broken:
        assert any("LimitNOFILE" in line or "lots" in line for line in ours), proc.stderr
    else:
        assert proc.returncode == 0 and ours == [], proc.stderr


def test_the_unit_stops_cleanly_restarts_on_failure_and_is_sandboxed() -> None:
    service = parse(unit_text("/opt/streamer/.venv/bin/streamer"))["Service"]
    assert service["ExecStart"].split()[1:] == ["run", "--config",
                                                 "/etc/streamer/streamer.toml"]
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) >= 30  # a final snapshot takes seconds
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # configuration errors do not loop
    assert int(service["LimitNOFILE"]) >= 4096
    assert service["User"] != "root"
    for key, value in (("ProtectSystem", "strict"), ("NoNewPrivileges", "true"),
                       ("ProtectHome", "true"), ("PrivateTmp", "true")):
        assert service[key] == value, key
    # the only writable path is where the shipped relative paths resolve
    assert service["ReadWritePaths"] == service["WorkingDirectory"] == "/var/lib/streamer"
