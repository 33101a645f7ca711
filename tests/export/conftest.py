"""Export tests reuse the report tests' in-memory case builders (tests/report/report_builders.py);
that folder goes on sys.path here (the report tests import their helpers by module name)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
