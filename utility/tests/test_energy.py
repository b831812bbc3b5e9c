"""Energy helpers: display in kWh and the delta of a cumulative register."""

from __future__ import annotations

import pytest

from utility.lib.energy import format_wh, wh_delta


@pytest.mark.parametrize(("energy_wh", "text"), [(2500, "2.500"), (0, "0.000"), (1, "0.001"), (-500, "-0.500")])
def test_format_wh(energy_wh, text):
    assert format_wh(energy_wh) == text


def test_wh_delta_is_the_energy_between_two_register_readings():
    assert wh_delta(1_000, 1_250) == 250
    assert wh_delta(1_000, 1_000) == 0


def test_a_register_going_backwards_is_refused():
    with pytest.raises(ValueError, match="backwards"):
        wh_delta(1_000, 999)
