"""``python -m sbs_tools`` runs the same CLI as ``sbs``."""
from .cli import run

run()
