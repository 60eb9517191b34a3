"""Copies manifest.json and widget/ into the wheel as backend/bundle/, so an installed mailsync
can build the widget archive and serve the sandbox without the source tree."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class BuildWithBundle(build_py):
    def run(self):
        super().run()
        bundle = Path(self.build_lib) / "backend" / "bundle"
        if bundle.exists():
            shutil.rmtree(bundle)
        bundle.mkdir(parents=True)
        shutil.copy2(ROOT / "manifest.json", bundle / "manifest.json")
        shutil.copytree(ROOT / "widget", bundle / "widget")


setup(cmdclass={"build_py": BuildWithBundle})
