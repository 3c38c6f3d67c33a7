"""docs/alerts.yml: valid for Prometheus (promtool), and naming only metrics we serve."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from backburner.api.routes.metrics import families, quality_families
from backburner.store.stats import Stats

RULES = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `apt-get install prometheus` (make test does it)"
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout


def test_alert_rules_name_only_metrics_we_serve() -> None:
    served = {family.name for family in (*families(Stats()), *quality_families([], []))}
    named = set(re.findall(r"\b(backburner_[a-z_]+)", RULES.read_text()))
    assert named
    for name in named:
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert base in served, f"{name} is not a metric /metrics serves"
