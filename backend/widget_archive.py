"""The widget archive uploaded to Kommo, as Kommo's widget documentation describes it: manifest.json
plus the contents of widget/, every file at the archive root, `classes/config.js` pointing at this
deployment's PUBLIC_URL. Nothing is written until every check passes, and a failed build lists
every problem at once, because Kommo's upload names only the first."""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.bundle import bundle_root
from backend.errors import ConfigurationError

WIDGET_KEYS = ("name", "description", "short_description", "interface_version", "locale", "installation")
LOCALES = ("en", "es", "pt", "tr", "id")
LOGOS = {"logo_min.png": (84, 84), "logo_medium.png": (240, 84), "logo_main.png": (400, 272),
         "logo.png": (130, 100), "logo_small.png": (108, 108)}
MAX_IMAGE_BYTES = 300 * 1024
TEXT_SUFFIXES = (".js", ".json", ".css", ".twig", ".html", ".txt", ".svg", ".md")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONFIG_JS = "classes/config.js"
BACKEND_URL = re.compile(r"""(BACKEND_URL\s*:\s*)(['"])(?:\\.|(?!\2).)*\2""")
# Same bytes for the same sources: a fixed timestamp instead of each file's mtime.
ZIP_TIME = (2024, 1, 1, 0, 0, 0)


class WidgetArchiveError(ConfigurationError):
    """The widget sources would make an archive that Kommo rejects (or one that cannot work)."""

    code = "widget_archive_invalid"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"widget archive not built ({count}):\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class BuiltArchive:
    path: Path
    size: int
    files: tuple[str, ...]


def source_root() -> Path:
    """The folder holding manifest.json and widget/: the wheel's bundle, else the checkout."""
    try:
        return bundle_root()
    except FileNotFoundError as exc:
        raise WidgetArchiveError([str(exc)]) from exc


def build(out: Path, public_url: str, root: Path | None = None) -> BuiltArchive:
    root = root if root is not None else source_root()
    files = archive_files(root)
    validate(root, files)
    contents = {name: files[name].read_bytes() for name in sorted(files)}
    if CONFIG_JS in contents:
        contents[CONFIG_JS] = _with_backend_url(contents[CONFIG_JS], public_url)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a crash never leaves a half-written widget.zip.
    fd, tmp = tempfile.mkstemp(prefix=".widget-", suffix=".zip", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in contents.items():
                info = zipfile.ZipInfo(name, ZIP_TIME)
                info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
                archive.writestr(info, data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return BuiltArchive(out, out.stat().st_size, tuple(contents))


def archive_files(root: Path) -> dict[str, Path]:
    """Archive name -> source file: manifest.json and everything under widget/ but dot- and __files."""
    files = {"manifest.json": root / "manifest.json"}
    widget = root / "widget"
    for path in sorted(widget.rglob("*")):
        relative = path.relative_to(widget)
        if path.is_file() and not any(part.startswith((".", "__")) for part in relative.parts):
            files.setdefault(relative.as_posix(), path)
    return files


def _with_backend_url(source: bytes, public_url: str) -> bytes:
    url = public_url.rstrip("/")

    def replace(match: re.Match[str]) -> str:
        quote = match.group(2)  # the file's own quote style, escaped inside the URL
        return match.group(1) + quote + url.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote

    return BACKEND_URL.sub(replace, source.decode("utf-8"), count=1).encode("utf-8")


def validate(root: Path, files: dict[str, Path] | None = None) -> dict[str, Any]:
    """Every check of Kommo's widget documentation that can be made offline; returns the manifest."""
    files = files if files is not None else archive_files(root)
    problems = [problem for name, path in files.items() for problem in _text_problems(name, path)]
    manifest = _load_json(root / "manifest.json", "manifest.json", problems)
    if isinstance(manifest, dict):
        problems += _manifest_problems(manifest)
    if isinstance(manifest, dict) and isinstance(manifest.get("widget"), dict):
        langs = _i18n(root, manifest, problems)
        problems += _key_problems(manifest, langs)
        problems += _image_problems(root, manifest)
    if (root / "widget" / "manifest.json").exists():
        problems.append("widget/manifest.json would overwrite manifest.json at the archive root")
    if (root / "widget" / CONFIG_JS).is_file() and not BACKEND_URL.search(
            (root / "widget" / CONFIG_JS).read_text("utf-8", errors="replace")):
        problems.append(f"widget/{CONFIG_JS} has no BACKEND_URL: '...' entry to point at PUBLIC_URL")
    if problems:
        raise WidgetArchiveError(list(dict.fromkeys(problems)))
    return manifest


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text_problems(name: str, path: Path) -> list[str]:
    if not (name.endswith(TEXT_SUFFIXES) and path.is_file()):
        return []
    data, shown = path.read_bytes(), name if name == "manifest.json" else f"widget/{name}"
    if data.startswith(b"\xef\xbb\xbf"):
        return [f"{shown} starts with a byte order mark: save it as UTF-8 without BOM"]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [f"{shown} is not UTF-8 (byte {exc.start}): save it as UTF-8 without BOM"]
    return []


def _load_json(path: Path, shown: str, problems: list[str]) -> Any:
    if not path.is_file():
        problems.append(f"{shown} is missing")
        return None
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{shown} is not valid JSON: {exc}")
        return None
    if not isinstance(value, dict):
        problems.append(f"{shown} must hold a JSON object")
        return None
    return value


def _manifest_problems(manifest: dict[str, Any]) -> list[str]:
    widget = manifest.get("widget")
    if not isinstance(widget, dict):
        return ["manifest.json has no widget object"]
    problems = [f"manifest.json widget.{key} is missing" for key in WIDGET_KEYS if key not in widget]
    if (version := widget.get("interface_version", 2)) != 2 or isinstance(version, bool):
        problems.append(f"manifest.json widget.interface_version is {version!r}; Kommo needs 2")
    locale = widget.get("locale", [])
    if not (isinstance(locale, list) and locale and all(lang in LOCALES for lang in locale)):
        problems.append(f"manifest.json widget.locale must list some of {', '.join(LOCALES)}")
    if not (isinstance(where := manifest.get("locations"), list) and where):
        problems.append("manifest.json locations must be a non-empty list of areas")
    return problems + _settings_problems(manifest) + _tour_problems(manifest)


def _settings_problems(manifest: dict[str, Any]) -> list[str]:
    settings = manifest.get("settings", {})
    if not isinstance(settings, dict):
        return ["manifest.json settings must be an object of fields"]
    problems = []
    for code, field in settings.items():
        if not (isinstance(field, dict) and isinstance(field.get("name"), str)):
            problems.append(f"manifest.json settings.{code}.name must be an i18n key")
    customs = [code for code, field in settings.items() if _object(field).get("type") == "custom"]
    if len(customs) > 1:
        problems.append(f"manifest.json settings has {len(customs)} custom fields; Kommo allows one")
    if customs and "settings" not in (manifest.get("locations") or []):
        problems.append("manifest.json has a custom setting, so locations must include settings")
    return problems


def _tour_problems(manifest: dict[str, Any]) -> list[str]:
    tour = manifest.get("tour")
    if not isinstance(tour, dict):
        return ["manifest.json tour is missing"]
    problems = []
    if tour.get("is_tour") is not True:
        problems.append("manifest.json tour.is_tour must be true")
    images = tour.get("tour_images")
    if not (isinstance(images, dict) and all(isinstance(v, list) and v for v in images.values())):
        problems.append("manifest.json tour.tour_images must map each language to a list of images")
    elif unknown := set(images) - set(manifest["widget"].get("locale") or []):
        problems.append(f"manifest.json tour.tour_images has languages not in widget.locale: {_few(unknown)}")
    if not isinstance(tour.get("tour_description"), str):
        problems.append("manifest.json tour.tour_description must be an i18n key")
    return problems


def _i18n(root: Path, manifest: dict[str, Any], problems: list[str]) -> dict[str, dict[str, Any]]:
    """Loads i18n/<lang>.json for every locale; notes missing, extra and differently shaped files."""
    locale = [lang for lang in manifest["widget"].get("locale") or [] if isinstance(lang, str)]
    present = sorted(p.stem for p in (root / "widget" / "i18n").glob("*.json"))
    problems += [f"widget/i18n/{lang}.json is missing (manifest.json widget.locale lists {lang})"
                 for lang in locale if lang not in present]
    problems += [f"widget/i18n/{lang}.json has no matching entry in manifest.json widget.locale"
                 for lang in present if lang not in locale]
    langs = {}
    for lang in locale:
        path = root / "widget" / "i18n" / f"{lang}.json"
        if path.is_file() and (data := _load_json(path, f"widget/i18n/{lang}.json", problems)):
            langs[lang] = data
    if langs:
        first, *others = langs
        for lang in others:
            mine, theirs = _paths(langs[lang]), _paths(langs[first])
            if missing := theirs - mine:
                problems.append(f"widget/i18n/{lang}.json lacks keys that {first}.json has: {_few(missing)}")
            if extra := mine - theirs:
                problems.append(f"widget/i18n/{lang}.json has keys that {first}.json lacks: {_few(extra)}")
    return langs


def _few(keys: set[str], shown: int = 8) -> str:
    names = sorted(keys)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _paths(tree: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        found |= _paths(value, f"{path}.") if isinstance(value, dict) and value else {path}
    return found


def _named_keys(manifest: dict[str, Any]) -> dict[str, str]:
    """Manifest location -> the i18n key found there."""
    widget, tour = manifest["widget"], _object(manifest.get("tour"))
    named = {f"widget.{key}": widget.get(key) for key in ("name", "description", "short_description")}
    named["tour.tour_description"] = tour.get("tour_description")
    for code, field in _object(manifest.get("settings")).items():
        named[f"settings.{code}.name"] = field.get("name") if isinstance(field, dict) else None
    if isinstance(manifest.get("advanced"), dict):
        named["advanced.title"] = manifest["advanced"].get("title")
    return {where: key for where, key in named.items() if isinstance(key, str)}


def _key_problems(manifest: dict[str, Any], langs: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for where, key in _named_keys(manifest).items():
        for lang, tree in langs.items():
            value: Any = tree
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if not (isinstance(value, str) and value.strip()):
                problems.append(f"manifest.json {where} names i18n key {key!r}, which has no text in "
                                f"widget/i18n/{lang}.json")
    return problems


def _image_problems(root: Path, manifest: dict[str, Any]) -> list[str]:
    images = root / "widget" / "images"
    dp = "digital_pipeline" in (manifest.get("locations") or [])
    required = LOGOS | ({"logo_dp.png": (174, 109)} if dp else {})
    tour_images = _object(_object(manifest.get("tour")).get("tour_images"))
    problems = []
    for name, size in required.items():
        problems += _image_file_problems(images / name, size)
    listed_images = {str(p) for v in tour_images.values() if isinstance(v, list) for p in v}
    for listed in sorted(listed_images):
        if not (listed.startswith("/images/") and "/" not in listed[8:]):
            problems.append(f"manifest.json tour.tour_images entry {listed!r} must look like /images/<file>")
        else:
            problems += _image_file_problems(images / listed[8:], None)
    for path in sorted(images.glob("*")):
        if path.is_file() and path.stat().st_size > MAX_IMAGE_BYTES:
            problems.append(f"widget/images/{path.name} is {path.stat().st_size // 1024} KB; "
                            "Kommo accepts at most 300 KB per image")
    return problems


def _image_file_problems(path: Path, size: tuple[int, int] | None) -> list[str]:
    shown = f"widget/images/{path.name}"
    if not path.is_file():
        return [f"{shown} is missing"]
    head = path.read_bytes()[:24]
    if not (head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR"):
        return [f"{shown} is not a PNG image"]
    width, height = struct.unpack(">II", head[16:24])
    if size is not None and (width, height) != size:
        return [f"{shown} is {width}x{height} pixels; Kommo needs {size[0]}x{size[1]}"]
    return []
