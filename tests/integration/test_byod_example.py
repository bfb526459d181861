"""The README's "Bring your own data" example, taken literally from README.md, trains and evaluates
on a small CSV in that example's column layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import yaml

from distillrec.cli import main
from training.config import RunConfig

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> dict:
    """The first YAML block of the README's "Bring your own data" section."""
    section = README.read_text(encoding="utf-8").split("## Bring your own data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "README.md: the 'Bring your own data' section has no ```yaml block"
    return yaml.safe_load(block.group(1))


def write_sample_csv(path: Path, users: int = 60, items: int = 50, per_user: int = 12, seed: int = 0) -> None:
    """Interactions in the example's columns: two taste groups, so a model has something to learn."""
    rng = np.random.default_rng(seed)
    lines = ["customer_id,sku,stars,ts"]
    for u in range(users):
        group = np.arange(items)[(np.arange(items) % 2) == (u % 2)]
        chosen = rng.choice(group, size=per_user, replace=False)
        for t, i in enumerate(chosen):
            lines.append(f"c{u},sku{i},{rng.integers(1, 6)},{1_000_000 + 100 * u + t}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_the_example_is_a_complete_config():
    cfg = RunConfig.model_validate(readme_example())
    assert cfg.data.source == "file" and cfg.data.user_col == "customer_id" and cfg.data.item_col == "sku"
    # a complete recipe, not the library defaults (1,000 epochs, one negative): what makes it train fast and well
    raw = readme_example()
    assert {"epochs", "negatives", "lr", "weight_decay"} <= set(raw["train"]) and raw["train"]["negatives"] > 1
    assert cfg.train.epochs <= 300 and {"select", "patience"} <= set(raw["eval"])


def test_the_readme_example_trains_and_evaluates_on_a_csv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example's data.path is relative to the working directory
    write_sample_csv(tmp_path / readme_example()["data"]["path"])
    (tmp_path / "my-teacher.yaml").write_text(yaml.safe_dump(readme_example()))
    assert main(["data", "info", "--config", "my-teacher.yaml"]) == 0
    code = main(["train", "--config", "my-teacher.yaml", "--out", "runs/shop-teacher", "--no-progress", "--set", "train.epochs=2", "--set", "train.threads=1"])
    assert code == 0
    result = json.loads((tmp_path / "runs" / "shop-teacher" / "result.json").read_text())
    assert result["dataset"]["users"] == 60 and result["dataset"]["split"] == "loo-time"
    assert result["test"]["protocol"] == "full" and 0 <= result["test"]["metrics"]["ndcg@10"] <= 1
    assert {"ndcg@10", "hr@50"} <= set(result["test"]["metrics"])
