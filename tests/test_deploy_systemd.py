"""The systemd service + timer pair, checked by systemd itself (``systemd-analyze verify``).

systemd cannot run here (no init), but its analyser loads the units as the manager would and
reports unknown keys, bad values and a missing executable. The units are copied with their
ExecStart pointed at the repository's own ``append-window.sh`` (the real one, installed as
``/usr/local/bin/deltaflow-append-window`` on a machine) and an instance name.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "deploy" / "systemd"
INSTALLED = "/usr/local/bin/deltaflow-append-window"

analyze = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(analyze), "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _instance(tmp_path: Path) -> tuple[Path, Path]:
    service = (SYSTEMD / "deltaflow@.service").read_text()
    assert INSTALLED in service
    script = ROOT / "deploy" / "append-window.sh"
    svc = tmp_path / "deltaflow@sensors.service"
    svc.write_text(service.replace(INSTALLED, str(script)))
    timer = tmp_path / "deltaflow@sensors.timer"
    timer.write_text((SYSTEMD / "deltaflow@.timer").read_text())
    return svc, timer


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    svc, timer = _instance(tmp_path)
    done = _verify(svc, timer)
    assert done.returncode == 0, done.stderr
    # systemd reports unknown keys or bad values as warnings and still exits 0
    assert done.stderr.strip() == "", done.stderr


def test_verify_would_catch_a_misspelt_key(tmp_path: Path) -> None:
    """The check above can fail: the same analyser flags a unit with a typo."""
    svc, timer = _instance(tmp_path)
    timer.write_text(timer.read_text().replace("Persistent=", "Persistant="))
    done = _verify(svc, timer)
    assert "Persistant" in done.stderr
