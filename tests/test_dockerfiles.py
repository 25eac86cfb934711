"""Every Dockerfile of the project is hadolint-clean (no finding at any level)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted([ROOT / "app" / "Dockerfile", *(ROOT / "lab" / "images").glob("*/Dockerfile")])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_clean(dockerfile):
    proc = subprocess.run([str(Path(sys.executable).parent / "hadolint"), "--no-color", str(dockerfile)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_app_image_runs_as_a_numeric_unprivileged_user():
    text = (ROOT / "app" / "Dockerfile").read_text()
    assert "USER 10001" in text and "useradd --system --uid 10001" in text
