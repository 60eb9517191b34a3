"""Where the widget sources live: the checkout's top level, or `backend/bundle/` in a wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).parent


def bundle_root() -> Path:
    for root in (_PACKAGE / "bundle", _PACKAGE.parent):
        if (root / "manifest.json").is_file() and (root / "widget").is_dir():
            return root
    raise FileNotFoundError("manifest.json and widget/ are neither in the wheel nor the checkout")
