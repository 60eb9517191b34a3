import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from backend.bundle import bundle_root

ROOT = Path(__file__).resolve().parents[1]


def test_bundle_root_finds_manifest_and_widget():
    root = bundle_root()
    assert (root / "manifest.json").is_file() and (root / "widget" / "script.js").is_file()


@pytest.mark.slow
def test_wheel_carries_templates_migrations_manifest_and_widget(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, cwd=tmp_path, timeout=300)
    wheel = next(tmp_path.glob("mailsync-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("backend/templates/base.html", "backend/migrations/env.py",
                     "backend/migrations/versions/0001_initial_schema.py",
                     "backend/bundle/manifest.json", "backend/bundle/widget/script.js",
                     "backend/bundle/widget/i18n/en.json", "backend/bundle/widget/images/logo_main.png",
                     "backend/bundle/widget/images/logo_min.png",
                     "backend/bundle/widget/images/tour_1_en.png"):
        assert required in names
    assert not any(name.startswith("tests/") for name in names)
