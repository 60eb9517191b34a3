"""`mailsync widget build`: the archive uploaded to Kommo, checked the way Kommo's upload and
moderation check it (per Kommo's widget documentation), and every way the sources can be wrong."""

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from backend.widget_archive import LOGOS, WidgetArchiveError, build, source_root

ROOT = Path(__file__).resolve().parents[1]
URL = "https://mailsync.test.example"
CONFIG_JS = "define([], function () { return {BACKEND_URL: 'http://127.0.0.1:8000'}; });\n"
MANIFEST = {
    "widget": {"name": "widget.name", "description": "widget.description",
               "short_description": "widget.short_description", "version": "1.0.0",
               "interface_version": 2, "init_once": False, "locale": ["en", "es", "pt"],
               "installation": True, "support": {"email": "support@mailsync.test.example"}},
    "locations": ["settings", "lcard-1", "ccard-1"],
    "tour": {"is_tour": True, "tour_description": "widget.tour_description",
             "tour_images": {lang: [f"/images/tour_1_{lang}.png", f"/images/tour_2_{lang}.png"]
                             for lang in ("en", "es", "pt")}},
    "settings": {"mapping": {"name": "settings.mapping", "type": "custom", "required": False}},
}


def _lang(word: str) -> dict:
    return {"widget": {"name": "mailsync", "description": f"{word} description",
                       "short_description": f"{word} short", "tour_description": f"{word} tour"},
            "settings": {"mapping": f"{word} mapping"}}


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")


@pytest.fixture
def source(tmp_path) -> Path:
    """A small, valid widget source tree (the real images, a stub script) to break one way at a time."""
    root = tmp_path / "src"
    shutil.copytree(ROOT / "widget" / "images", root / "widget" / "images")
    (root / "widget" / "i18n").mkdir()
    (root / "widget" / "classes").mkdir()
    _write_json(root / "manifest.json", MANIFEST)
    for lang, word in (("en", "English"), ("es", "Español"), ("pt", "Português")):
        _write_json(root / "widget" / "i18n" / f"{lang}.json", _lang(word))
    (root / "widget" / "script.js").write_text(
        "define(['./classes/config.js'], function (config) {\n"
        "  return function () { this.callbacks = {render: function () { return true; }}; };\n});\n")
    (root / "widget" / "classes" / "config.js").write_text(CONFIG_JS)
    (root / "widget" / "style.css").write_text(".mailsync { color: #1b2d3a; }\n")
    return root


def _problems(source: Path, tmp_path: Path) -> list[str]:
    out = tmp_path / "out" / "widget.zip"
    with pytest.raises(WidgetArchiveError) as caught:
        build(out, URL, source)
    assert not out.exists()
    return caught.value.problems


def _edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text(encoding="utf-8"))
    change(value)
    _write_json(path, value)


# --- the real widget, as shipped ------------------------------------------------------------------

def _static_check(archive: zipfile.ZipFile) -> None:
    """Kommo's rules, checked here independently of backend.widget_archive."""
    names = archive.namelist()
    assert "manifest.json" in names and "script.js" in names  # files at the root, no top folder
    assert not [n for n in names if n.startswith(("widget/", "/", "src/")) or n.endswith("/")]
    for name in names:
        if name.endswith((".js", ".json", ".css", ".twig")):
            data = archive.read(name)
            assert not data.startswith(b"\xef\xbb\xbf"), name
            data.decode("utf-8")
    manifest = json.loads(archive.read("manifest.json"))
    widget = manifest["widget"]
    for key in ("name", "description", "short_description", "interface_version", "locale", "installation"):
        assert key in widget, key
    assert widget["interface_version"] == 2 and manifest["locations"]
    i18n = {n[len("i18n/"):-len(".json")] for n in names if n.startswith("i18n/") and n.endswith(".json")}
    assert i18n == set(widget["locale"])
    langs = {lang: json.loads(archive.read(f"i18n/{lang}.json")) for lang in widget["locale"]}
    shapes = {lang: _shape(tree) for lang, tree in langs.items()}
    assert all(shape == shapes[widget["locale"][0]] for shape in shapes.values())
    named = [widget["name"], widget["description"], widget["short_description"],
             manifest["tour"]["tour_description"],
             *(field["name"] for field in manifest.get("settings", {}).values())]
    for lang, tree in langs.items():
        for key in named:
            value = tree
            for part in key.split("."):
                value = value[part]
            assert isinstance(value, str) and value.strip(), (lang, key)
    _check_images(archive, manifest)


def _shape(tree):
    return {k: _shape(v) for k, v in tree.items()} if isinstance(tree, dict) else None


def _check_images(archive: zipfile.ZipFile, manifest: dict) -> None:
    tour = [path.removeprefix("/") for paths in manifest["tour"]["tour_images"].values() for path in paths]
    assert set(manifest["tour"]["tour_images"]) == set(manifest["widget"]["locale"])
    for name in [f"images/{logo}" for logo in LOGOS] + tour:
        data = archive.read(name)
        assert len(data) <= 300 * 1024, name
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG", name
            if name.removeprefix("images/") in LOGOS:
                assert image.size == LOGOS[name.removeprefix("images/")], name
    sizes = {"logo_min.png": (84, 84), "logo_medium.png": (240, 84), "logo_main.png": (400, 272),
             "logo.png": (130, 100), "logo_small.png": (108, 108)}
    assert sizes == LOGOS  # the table of Kommo's widget documentation, written out once more on purpose


def test_the_real_widget_builds_into_a_valid_archive(tmp_path):
    built = build(tmp_path / "widget.zip", URL)
    assert built.path == tmp_path / "widget.zip" and built.size == built.path.stat().st_size
    with zipfile.ZipFile(built.path) as archive:
        assert archive.testzip() is None
        assert tuple(archive.namelist()) == built.files
        _static_check(archive)
        if "classes/config.js" in built.files:
            config = archive.read("classes/config.js").decode()
            assert f"BACKEND_URL: '{URL}'" in config and "127.0.0.1" not in config


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: no JS syntax check")
def test_every_script_in_the_real_archive_parses_in_node(tmp_path):
    built = build(tmp_path / "widget.zip", URL)
    with zipfile.ZipFile(built.path) as archive:
        archive.extractall(tmp_path / "unpacked")
    scripts = sorted((tmp_path / "unpacked").rglob("*.js"))
    assert scripts
    for script in scripts:
        checked = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True,
                                 timeout=60)
        assert checked.returncode == 0, f"{script.name}: {checked.stderr}"


def test_sources_come_from_the_bundle_or_the_checkout():
    assert source_root() in (ROOT / "backend" / "bundle", ROOT)


# --- a valid tree, then each way it can be wrong -------------------------------------------------

def test_a_valid_tree_builds_with_config_pointing_at_public_url(source, tmp_path):
    built = build(tmp_path / "out" / "widget.zip", URL + "/", source)
    with zipfile.ZipFile(built.path) as archive:
        _static_check(archive)
        assert archive.read("classes/config.js").decode() == CONFIG_JS.replace("http://127.0.0.1:8000", URL)
        images = [f"images/{path.name}" for path in (source / "widget" / "images").iterdir()]
        assert sorted(archive.namelist()) == sorted(
            ["manifest.json", "script.js", "style.css", "classes/config.js", "i18n/en.json",
             "i18n/es.json", "i18n/pt.json", *images])
    assert (source / "widget" / "classes" / "config.js").read_text() == CONFIG_JS  # source untouched
    again = build(tmp_path / "again.zip", URL, source)
    assert again.path.read_bytes() == built.path.read_bytes()  # reproducible


def test_dotfiles_stay_out_of_the_archive(source, tmp_path):
    (source / "widget" / ".DS_Store").write_bytes(b"\0\1")
    (source / "widget" / "images" / ".thumbs").write_bytes(b"\0")
    built = build(tmp_path / "widget.zip", URL, source)
    assert not [name for name in built.files if "/." in f"/{name}"]


def test_a_missing_locale_file(source, tmp_path):
    (source / "widget" / "i18n" / "pt.json").unlink()
    assert _problems(source, tmp_path) == [
        "widget/i18n/pt.json is missing (manifest.json widget.locale lists pt)"]


def test_an_i18n_file_for_a_locale_the_manifest_does_not_list(source, tmp_path):
    _write_json(source / "widget" / "i18n" / "tr.json", _lang("Türkçe"))
    assert _problems(source, tmp_path) == [
        "widget/i18n/tr.json has no matching entry in manifest.json widget.locale"]


def test_i18n_files_with_different_keys(source, tmp_path):
    def change(tree):
        del tree["settings"]["mapping"]
        tree["settings"]["maping"] = "typo"
        tree["extra"] = {"a": "1", "b": "2"}

    _edit_json(source / "widget" / "i18n" / "es.json", change)
    assert _problems(source, tmp_path) == [
        "widget/i18n/es.json lacks keys that en.json has: settings.mapping",
        "widget/i18n/es.json has keys that en.json lacks: extra.a, extra.b, settings.maping",
        "manifest.json settings.mapping.name names i18n key 'settings.mapping', which has no text in "
        "widget/i18n/es.json"]


def test_a_manifest_key_that_no_locale_defines(source, tmp_path):
    _edit_json(source / "manifest.json", lambda m: m["widget"].update(name="widget.title"))
    assert _problems(source, tmp_path) == [
        f"manifest.json widget.name names i18n key 'widget.title', which has no text in "
        f"widget/i18n/{lang}.json" for lang in ("en", "es", "pt")]


def test_a_missing_manifest_key_and_a_wrong_interface_version(source, tmp_path):
    def change(manifest):
        del manifest["widget"]["short_description"]
        manifest["widget"]["interface_version"] = 1

    _edit_json(source / "manifest.json", change)
    assert _problems(source, tmp_path) == [
        "manifest.json widget.short_description is missing",
        "manifest.json widget.interface_version is 1; Kommo needs 2"]


def test_a_manifest_that_is_not_json(source, tmp_path):
    (source / "manifest.json").write_text('{"widget": {"name": "widget.name",}}')
    assert _problems(source, tmp_path) == [
        "manifest.json is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 35 (char 34)"]


def test_a_tour_without_images_for_its_language_and_two_custom_fields(source, tmp_path):
    def change(manifest):
        manifest["tour"]["tour_images"]["tr"] = ["/images/tour_1_tr.png"]
        manifest["settings"]["other"] = {"name": "settings.mapping", "type": "custom", "required": False}

    _edit_json(source / "manifest.json", change)
    assert _problems(source, tmp_path) == [
        "manifest.json settings has 2 custom fields; Kommo allows one",
        "manifest.json tour.tour_images has languages not in widget.locale: tr",
        "widget/images/tour_1_tr.png is missing"]


def test_a_logo_of_the_wrong_size(source, tmp_path):
    Image.new("RGBA", (80, 80), (46, 160, 154, 255)).save(source / "widget" / "images" / "logo_min.png")
    assert _problems(source, tmp_path) == ["widget/images/logo_min.png is 80x80 pixels; Kommo needs 84x84"]


def test_missing_images_and_one_that_is_not_a_png(source, tmp_path):
    (source / "widget" / "images" / "logo_main.png").unlink()
    (source / "widget" / "images" / "tour_2_es.png").unlink()
    Image.new("RGB", (130, 100)).save(source / "widget" / "images" / "logo.png", format="JPEG")
    assert _problems(source, tmp_path) == [
        "widget/images/logo_main.png is missing",
        "widget/images/logo.png is not a PNG image",
        "widget/images/tour_2_es.png is missing"]


def test_an_image_over_300_kb(source, tmp_path):
    path = source / "widget" / "images" / "tour_1_en.png"
    path.write_bytes(path.read_bytes() + b"\0" * (310 * 1024 - path.stat().st_size))
    assert _problems(source, tmp_path) == [
        "widget/images/tour_1_en.png is 310 KB; Kommo accepts at most 300 KB per image"]


def test_a_byte_order_mark_and_a_file_that_is_not_utf8(source, tmp_path):
    script = source / "widget" / "script.js"
    script.write_bytes(b"\xef\xbb\xbf" + script.read_bytes())
    css = ".mailsync::after { content: 'ma\xf1ana'; }\n"
    (source / "widget" / "style.css").write_bytes(css.encode("latin-1"))
    en = source / "widget" / "i18n" / "en.json"
    en.write_bytes(b"\xef\xbb\xbf" + en.read_bytes())
    assert _problems(source, tmp_path) == [
        "widget/i18n/en.json starts with a byte order mark: save it as UTF-8 without BOM",
        "widget/script.js starts with a byte order mark: save it as UTF-8 without BOM",
        "widget/style.css is not UTF-8 (byte 31): save it as UTF-8 without BOM"]


def test_a_config_js_without_backend_url(source, tmp_path):
    (source / "widget" / "classes" / "config.js").write_text("define([], function () { return {}; });\n")
    assert _problems(source, tmp_path) == [
        "widget/classes/config.js has no BACKEND_URL: '...' entry to point at PUBLIC_URL"]


def test_without_config_js_the_rest_still_builds(source, tmp_path):
    (source / "widget" / "classes" / "config.js").unlink()
    assert "classes/config.js" not in build(tmp_path / "widget.zip", URL, source).files


def test_all_problems_are_listed_in_one_message(source, tmp_path):
    (source / "widget" / "i18n" / "es.json").unlink()
    Image.new("RGBA", (84, 84)).save(source / "widget" / "images" / "logo_small.png")
    with pytest.raises(WidgetArchiveError) as caught:
        build(tmp_path / "widget.zip", URL, source)
    assert caught.value.message == (
        "widget archive not built (2 problems):\n"
        "  - widget/i18n/es.json is missing (manifest.json widget.locale lists es)\n"
        "  - widget/images/logo_small.png is 84x84 pixels; Kommo needs 108x108")


# --- the command ---------------------------------------------------------------------------------

def _cli(args, cwd, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KOMMO_", "ENV", "PUBLIC_URL"))}
    return subprocess.run([sys.executable, "-m", "backend.cli", "widget", "build", *args],
                          env={**environ, "ENV": "test", **env}, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_writes_widget_zip_in_the_current_folder(source, tmp_path):
    (tmp_path / "here").mkdir()
    done = _cli(["--source", str(source)], tmp_path / "here", PUBLIC_URL="https://sync.example.org/")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "here" / "widget.zip"
    with zipfile.ZipFile(out) as archive:
        count, config = len(archive.namelist()), archive.read("classes/config.js").decode()
    assert done.stdout == (f"{out}  {out.stat().st_size:,} bytes, {count} files, "
                           "BACKEND_URL https://sync.example.org\n")
    assert "BACKEND_URL: 'https://sync.example.org'" in config


def test_cli_into_a_folder_warns_when_public_url_is_not_https(source, tmp_path):
    (tmp_path / "dist").mkdir()
    done = _cli(["--source", str(source), "--out", str(tmp_path / "dist")], tmp_path,
                PUBLIC_URL="http://sync.example.org")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'dist' / 'widget.zip'}  ")
    assert done.stderr == ("mailsync: warning: PUBLIC_URL http://sync.example.org is not https; the widget "
                           "will not reach it from Kommo\n")


def test_cli_lists_the_problems_and_exits_1(source, tmp_path):
    (source / "widget" / "i18n" / "pt.json").unlink()
    done = _cli(["--source", str(source), "--out", str(tmp_path / "w.zip")], tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == ("mailsync: widget archive not built (1 problem):\n"
                           "  - widget/i18n/pt.json is missing (manifest.json widget.locale lists pt)\n")
    assert not (tmp_path / "w.zip").exists()


@pytest.mark.slow
def test_cli_builds_from_the_wheel_outside_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, cwd=tmp_path, timeout=300)
    with zipfile.ZipFile(next((tmp_path / "dist").glob("mailsync-*.whl"))) as wheel:
        wheel.extractall(tmp_path / "site")
    (tmp_path / "elsewhere").mkdir()
    env = {"PYTHONPATH": str(tmp_path / "site")}
    where = subprocess.run([sys.executable, "-c", "from backend.widget_archive import source_root; "
                            "print(source_root())"], env={**os.environ, **env}, cwd=tmp_path / "elsewhere",
                           capture_output=True, text=True, timeout=60, check=True)
    assert where.stdout.strip() == str(tmp_path / "site" / "backend" / "bundle")
    done = _cli([], tmp_path / "elsewhere", **env)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "elsewhere" / "widget.zip") as archive:
        _static_check(archive)
