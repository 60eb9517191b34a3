"""Draws every PNG the Kommo widget needs into widget/images/ (the PNGs are committed; re-run this
after a design change and look at the result).

Needs Pillow (in the `dev` extra: `pip install -e '.[dev]'`) and the DejaVu Sans fonts
(Debian/Ubuntu: `apt-get install -y fonts-dejavu-core`; or point MAILSYNC_FONT_DIR at a folder
holding DejaVuSans.ttf and DejaVuSans-Bold.ttf).

    .venv/bin/python scripts/widget_images.py [--out widget/images]

Everything is drawn at several times the final size and scaled down, so edges and text are smooth.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

try:
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
except ImportError:
    sys.exit("widget_images.py needs Pillow: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
FONT_DIRS = [os.environ.get("MAILSYNC_FONT_DIR", ""), "/usr/share/fonts/truetype/dejavu",
             "/usr/share/fonts/dejavu", "/usr/local/share/fonts", "/Library/Fonts"]
TEAL, BLUE = (46, 160, 154), (31, 86, 132)
MINT, INK, GREY = (186, 236, 226), (27, 45, 58), (92, 108, 120)
PAPER, LINE = (244, 248, 250), (221, 230, 236)
SS = 4  # supersampling factor
TOUR_SIZE = (800, 500)

TOUR = {
    "en": [("Map pipeline stages to MailerLite groups or Mailchimp tags",
            "When a lead moves to a stage, its contact joins the matching group or tag. "
            "One click suggests a complete mapping to start from.",
            ["New", "Qualified", "Proposal", "Won"], ["New Lead", "In Progress", "Customer"]),
           ("Opt-outs come back to Kommo",
            "Unsubscribes, bounces and spam complaints at MailerLite or Mailchimp show on the "
            "contact's card, and the lead gets a note.",
            ["Unsubscribed", "Contact", "Email status", "Note: unsubscribed in MailerLite"], [])],
    "es": [("Vincula las etapas del embudo a grupos de MailerLite o etiquetas de Mailchimp",
            "Cuando un lead cambia de etapa, su contacto entra en el grupo o la etiqueta "
            "correspondiente. Un clic sugiere una asignación completa para empezar.",
            ["Nuevo", "Calificado", "Propuesta", "Ganado"], ["Nuevo lead", "En curso", "Cliente"]),
           ("Las bajas vuelven a Kommo",
            "Las bajas, los rebotes y las quejas de spam en MailerLite o Mailchimp aparecen en "
            "la ficha del contacto, y el lead recibe una nota.",
            ["Dado de baja", "Contacto", "Estado del email", "Nota: dado de baja en MailerLite"], [])],
    "pt": [("Vincule as etapas do funil a grupos do MailerLite ou tags do Mailchimp",
            "Quando um lead muda de etapa, o contato entra no grupo ou na tag correspondente. "
            "Um clique sugere um mapeamento completo para começar.",
            ["Novo", "Qualificado", "Proposta", "Ganho"], ["Novo lead", "Em andamento", "Cliente"]),
           ("Os descadastros voltam para o Kommo",
            "Descadastros, devoluções e denúncias de spam no MailerLite ou Mailchimp aparecem no "
            "cartão do contato, e o lead recebe uma nota.",
            ["Descadastrado", "Contato", "Status do e-mail", "Nota: descadastrado no MailerLite"], [])],
}


def font(size: float, bold: bool = False) -> ImageFont.FreeTypeFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in filter(None, FONT_DIRS):
        if (Path(folder) / name).is_file():
            return ImageFont.truetype(str(Path(folder) / name), round(size))
    sys.exit(f"widget_images.py needs the DejaVu Sans font {name}: apt-get install -y "
             "fonts-dejavu-core (or set MAILSYNC_FONT_DIR)")


def gradient(size: tuple[int, int], start: tuple, end: tuple) -> Image.Image:
    """A diagonal gradient from the top-left colour to the bottom-right one."""
    small = Image.new("RGB", (64, 64))
    for x in range(64):
        for y in range(64):
            t = (x + y) / 126
            small.putpixel((x, y), tuple(round(a + (b - a) * t) for a, b in zip(start, end, strict=True)))
    return small.resize(size, Image.Resampling.BICUBIC)


def draw_mark(canvas: Image.Image, x: float, y: float, size: float) -> None:
    """The mark: an envelope inside two sync arrows on a teal-to-blue rounded square."""
    box = (round(x), round(y), round(x + size), round(y + size))
    mask = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(box, radius=size * 0.23, fill=255)
    canvas.paste(gradient((box[2] - box[0], box[3] - box[1]), TEAL, BLUE), box[:2], mask.crop(box))
    draw = ImageDraw.Draw(canvas)
    cx, cy = x + size / 2, y + size / 2
    radius, width = size * 0.335, size * 0.062
    for start, end in ((200, 318), (20, 138)):
        arc_box = (cx - radius, cy - radius, cx + radius, cy + radius)
        draw.arc(arc_box, start, end, fill=MINT, width=round(width))
        _arrow_head(draw, cx, cy, radius, end, size * 0.095)
    ew, eh = size * 0.40, size * 0.28
    env = (cx - ew / 2, cy - eh / 2, cx + ew / 2, cy + eh / 2)
    draw.rounded_rectangle(env, radius=size * 0.035, fill=(255, 255, 255))
    flap = [(env[0] + width * 0.6, env[1] + width * 0.6), (cx, cy + eh * 0.08),
            (env[2] - width * 0.6, env[1] + width * 0.6)]
    draw.line(flap, fill=BLUE, width=round(size * 0.04), joint="curve")


def _arrow_head(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float,
                half: float) -> None:
    a = math.radians(angle)
    px, py = cx + r * math.cos(a), cy + r * math.sin(a)
    tx, ty = -math.sin(a), math.cos(a)  # clockwise tangent on screen (y grows downwards)
    nx, ny = math.cos(a), math.sin(a)
    draw.polygon([(px + tx * half * 1.5, py + ty * half * 1.5), (px + nx * half, py + ny * half),
                  (px - nx * half, py - ny * half)], fill=MINT)


def draw_wordmark(draw: ImageDraw.ImageDraw, x: float, y: float, size: float,
                  anchor: str = "ls") -> None:
    """'mail' in ink, 'sync' in teal, one word; `anchor` as in Pillow (left or middle, baseline)."""
    bold = font(size, bold=True)
    total, mail = draw.textlength("mailsync", font=bold), draw.textlength("mail", font=bold)
    left = x - total / 2 if anchor.startswith("m") else x
    draw.text((left, y), "mail", font=bold, fill=INK, anchor="ls")
    draw.text((left + mail, y), "sync", font=bold, fill=BLUE, anchor="ls")


def finish(canvas: Image.Image, size: tuple[int, int], path: Path, *, palette: bool = False) -> None:
    image = canvas.resize(size, Image.Resampling.LANCZOS)
    if palette:  # opaque slides: 256 median-cut colours look the same at a third of the bytes
        image = image.convert("RGB").quantize(256, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {size[0]}x{size[1]}  "
          f"{path.stat().st_size // 1024} KB")


def square_logo(side: int, path: Path) -> None:
    canvas = Image.new("RGBA", (side * SS, side * SS), (0, 0, 0, 0))
    draw_mark(canvas, side * SS * 0.03, side * SS * 0.03, side * SS * 0.94)
    finish(canvas, (side, side), path)


def logo_medium(path: Path) -> None:
    w, h = 240 * SS, 84 * SS
    canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw_mark(canvas, 10 * SS, 12 * SS, 60 * SS)
    draw_wordmark(ImageDraw.Draw(canvas), 82 * SS, 53 * SS, 29 * SS)
    finish(canvas, (240, 84), path)


def logo_classic(path: Path) -> None:
    w, h = 130 * SS, 100 * SS
    canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw_mark(canvas, (w - 62 * SS) / 2, 6 * SS, 62 * SS)
    draw_wordmark(ImageDraw.Draw(canvas), w / 2, 92 * SS, 19 * SS, anchor="ms")
    finish(canvas, (130, 100), path)


def logo_main(path: Path) -> None:
    w, h = 400 * SS, 272 * SS
    canvas = gradient((w, h), (240, 248, 248), (226, 236, 245)).convert("RGBA")
    draw_mark(canvas, (w - 112 * SS) / 2, 36 * SS, 112 * SS)
    draw = ImageDraw.Draw(canvas)
    draw_wordmark(draw, w / 2, 196 * SS, 40 * SS, anchor="ms")
    draw.text((w / 2, 228 * SS), "Kommo  ⇄  MailerLite · Mailchimp", font=font(15 * SS),
              fill=GREY, anchor="ms")
    finish(canvas, (400, 272), path)


def wrap(draw: ImageDraw.ImageDraw, text: str, face, width: float) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=face) > width:
            lines.append(line)
            candidate = word
        line = candidate
    return [*lines, line]


def tour_slide(step: int, copy: tuple, path: Path) -> None:
    s = 2  # tour slides are large: twice the size is smooth enough
    w, h = TOUR_SIZE[0] * s, TOUR_SIZE[1] * s
    canvas = Image.new("RGBA", (w, h), (*PAPER, 255))
    draw = ImageDraw.Draw(canvas)
    draw_mark(canvas, 40 * s, 30 * s, 34 * s)
    draw_wordmark(draw, 84 * s, 54 * s, 19 * s)
    draw.text((w - 40 * s, 54 * s), f"{step} / 2", font=font(15 * s), fill=GREY, anchor="rs")
    title, body, labels, segments = copy
    y = 112 * s
    for line in wrap(draw, title, font(28 * s, True), w - 80 * s):
        draw.text((40 * s, y), line, font=font(28 * s, True), fill=INK, anchor="ls")
        y += 36 * s
    for line in wrap(draw, body, font(16 * s), w - 80 * s):
        draw.text((40 * s, y + 4 * s), line, font=font(16 * s), fill=GREY, anchor="ls")
        y += 24 * s
    card = (40 * s, 268 * s, w - 40 * s, h - 32 * s)
    _card(canvas, card, s)
    (_stages_scene if segments else _optout_scene)(canvas, card, labels, segments, s)
    finish(canvas, TOUR_SIZE, path, palette=True)


def _card(canvas: Image.Image, box: tuple, s: int) -> None:
    shadow = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(shadow).rounded_rectangle((box[0], box[1] + 4 * s, box[2], box[3] + 4 * s),
                                             radius=14 * s, fill=40)
    canvas.paste((27, 45, 58), (0, 0), shadow.filter(ImageFilter.GaussianBlur(8 * s)))
    ImageDraw.Draw(canvas).rounded_rectangle(box, radius=14 * s, fill=(255, 255, 255),
                                             outline=LINE, width=s)


def _pill(draw, at: tuple, text: str, size: float, colours: tuple, s: int, *, centred=True) -> None:
    """A rounded label; `at` is its centre, or its left edge and vertical middle."""
    face = font(size * s, bold=True)
    width = draw.textlength(text, font=face) + 28 * s
    left = at[0] - width / 2 if centred else at[0]
    draw.rounded_rectangle((left, at[1] - 16 * s, left + width, at[1] + 16 * s), radius=16 * s,
                           fill=colours[0])
    draw.text((left + width / 2, at[1]), text, font=face, fill=colours[1], anchor="mm")


def _arrow(draw, start: tuple, end: tuple, colour, width: float, head: float) -> None:
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    back = (end[0] - head * math.cos(angle), end[1] - head * math.sin(angle))
    draw.line([start, back], fill=colour, width=round(width))
    side = (-math.sin(angle) * head * 0.6, math.cos(angle) * head * 0.6)
    draw.polygon([end, (back[0] + side[0], back[1] + side[1]), (back[0] - side[0], back[1] - side[1])],
                 fill=colour)


def _stages_scene(canvas, card, stages, segments, s) -> None:
    """Four pipeline stages (top row) with arrows down to the three email segments they feed."""
    draw = ImageDraw.Draw(canvas)
    left, right = card[0] + 28 * s, card[2] - 28 * s
    step = (right - left) / len(stages)
    tints = [(214, 234, 248), (222, 238, 232), (246, 236, 214), (214, 240, 222)]
    centres = []
    for i, (stage, tint) in enumerate(zip(stages, tints, strict=True)):
        box = (left + i * step + 6 * s, card[1] + 24 * s, left + (i + 1) * step - 6 * s, card[1] + 68 * s)
        draw.rounded_rectangle(box, radius=8 * s, fill=tint)
        draw.rectangle((box[0], box[3] - 4 * s, box[2], box[3]), fill=TEAL if i == 3 else BLUE)
        draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2 - 2 * s), stage,
                  font=font(15 * s, True), fill=INK, anchor="mm")
        centres.append((box[0] + box[2]) / 2)
    seg_x = [centres[0], (centres[1] + centres[2]) / 2, centres[3]]
    y_seg = card[3] - 40 * s
    for i, x in enumerate(centres):
        target = seg_x[(0, 1, 1, 2)[i]] + (0, -16 * s, 16 * s, 0)[i]  # two heads side by side
        _arrow(draw, (x, card[1] + 78 * s), (target, y_seg - 24 * s), (178, 196, 208), 3 * s, 12 * s)
    for x, name in zip(seg_x, segments, strict=True):
        _pill(draw, (x, y_seg), name, 15, (MINT, BLUE), s)


def _optout_scene(canvas, card, labels, _segments, s) -> None:
    """The address marked unsubscribed at the ESP, an arrow, the Kommo contact with its note."""
    unsubscribed, contact, status, note = labels
    draw = ImageDraw.Draw(canvas)
    small, red = font(13 * s), (160, 52, 40)
    esp = (card[0] + 24 * s, card[1] + 22 * s, card[0] + 290 * s, card[3] - 22 * s)
    kommo = (esp[2] + 82 * s, esp[1], card[2] - 24 * s, esp[3])
    for box, caption in ((esp, "MailerLite · Mailchimp"), (kommo, "Kommo")):
        draw.rounded_rectangle(box, radius=10 * s, fill=PAPER, outline=LINE, width=s)
        draw.text((box[0] + 16 * s, box[1] + 26 * s), caption, font=small, fill=GREY, anchor="ls")
    draw.text((esp[0] + 16 * s, esp[1] + 64 * s), "ana@example.com", font=font(16 * s, True), fill=INK,
              anchor="ls")
    _pill(draw, (esp[0] + 16 * s, esp[1] + 100 * s), unsubscribed, 13, ((251, 226, 222), red), s,
          centred=False)
    mid = (esp[1] + esp[3]) / 2
    _arrow(draw, (esp[2] + 16 * s, mid), (kommo[0] - 16 * s, mid), TEAL, 5 * s, 16 * s)
    draw.text((kommo[0] + 16 * s, kommo[1] + 58 * s), f"{contact}: Ana Souza", font=font(15 * s, True),
              fill=INK, anchor="ls")
    draw.text((kommo[0] + 16 * s, kommo[1] + 84 * s), f"{status}:", font=small, fill=GREY, anchor="ls")
    draw.text((kommo[0] + 22 * s + draw.textlength(f"{status}:", font=small), kommo[1] + 84 * s),
              unsubscribed.lower(), font=font(13 * s, True), fill=red, anchor="ls")
    note_box = (kommo[0] + 16 * s, kommo[1] + 100 * s, kommo[2] - 16 * s, kommo[1] + 134 * s)
    draw.rounded_rectangle(note_box, radius=8 * s, fill=(255, 244, 214))
    draw.text((note_box[0] + 12 * s, (note_box[1] + note_box[3]) / 2), note, font=small, fill=INK,
              anchor="lm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "widget" / "images")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    square_logo(84, out / "logo_min.png")
    square_logo(108, out / "logo_small.png")
    logo_medium(out / "logo_medium.png")
    logo_classic(out / "logo.png")
    logo_main(out / "logo_main.png")
    for lang, slides in TOUR.items():
        for step, copy in enumerate(slides, start=1):
            tour_slide(step, copy, out / f"tour_{step}_{lang}.png")


if __name__ == "__main__":
    main()
