"""`retention:` in config.yaml: defaults, durations, `null` to keep forever, one clear error."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from engine.config import load_config
from engine.errors import ConfigError


def test_without_the_section_events_keep_30_days_and_step_output_90(tmp_path: Path) -> None:
    config = load_config(_written(tmp_path, {}))

    assert config.retention.events == timedelta(days=30)
    assert config.retention.step_output == timedelta(days=90)


def test_durations_are_read_and_a_missing_key_keeps_its_default(tmp_path: Path) -> None:
    config = load_config(_written(tmp_path, {"retention": {"events": "7d"}}))

    assert config.retention.events == timedelta(days=7)
    assert config.retention.step_output == timedelta(days=90)
    assert config.retention.model_dump(mode="json") == {"events": "7d", "step_output": "90d"}


def test_null_keeps_forever(tmp_path: Path) -> None:
    config = load_config(_written(tmp_path, {"retention": {"events": None, "step_output": None}}))

    assert (config.retention.events, config.retention.step_output) == (None, None)


@pytest.mark.parametrize(
    ("retention", "words"),
    [
        ({"events": "soon"}, "retention.events"),
        ({"step_output": "0s"}, "above zero"),
        ({"step_outputs": "90d"}, "retention.step_outputs"),
    ],
)
def test_a_wrong_value_or_key_is_one_line_naming_it(
    tmp_path: Path, retention: dict[str, str], words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_written(tmp_path, {"retention": retention}))

    message = str(caught.value)
    assert words in message and "\n" not in message
    assert "config.yaml:" in message


def _written(folder: Path, sections: dict[str, object]) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(sections) if sections else "{}\n")
    return path
