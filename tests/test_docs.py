"""The documented interface matches the code: every config key is in docs/config.md with its default."""
import yaml
from conftest import REPO

from skipexp.core.config import describe


def test_config_reference_lists_every_key_with_its_default():
    text = (REPO / "docs" / "config.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2].strip(" `")
            for line in text.splitlines() if line.startswith("| `")}
    for key, default, _ in describe():
        assert key in rows, f"{key} is missing from docs/config.md"
        assert yaml.safe_load(rows[key]) == default, f"{key}: docs say {rows[key]}, the code {default!r}"
    assert set(rows) == {k for k, _, _ in describe()}, "docs/config.md lists keys the code does not have"
