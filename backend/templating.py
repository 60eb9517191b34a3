"""Jinja2 pages (install result, operator dashboard, sandbox), rendered from backend/templates."""

from pathlib import Path

from starlette.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
