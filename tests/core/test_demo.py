"""The README's first command keeps working."""

from __future__ import annotations

import pytest

from chargenet.cli.main import main


def test_the_demo_settles_a_session_and_conserves_tokens(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "settled: CPO paid" in out
    assert "tokens conserved: True" in out
