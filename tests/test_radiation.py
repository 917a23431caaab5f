"""Radiation presets, parsing and unit conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xrdsolve.refine.errors import RadiationError
from xrdsolve.refine.radiation import Geometry, Probe, Radiation, q_to_two_theta, two_theta_to_q


@pytest.mark.parametrize(
    ("name", "ka1"),
    [
        ("CuKa", 1.540593),
        ("MoKa", 0.709317),
        ("CoKa", 1.788965),
        ("CrKa", 2.289760),
        ("FeKa", 1.936042),
        ("AgKa", 0.559421),
    ],
)
def test_presets_are_doublets_at_two_to_one(name, ka1):
    rad = Radiation.preset(name)
    assert rad.wavelengths[0] == pytest.approx(ka1)
    assert rad.wavelengths[1] > rad.wavelengths[0]
    assert rad.weights == (1.0, 0.5)
    assert rad.primary_wavelength == pytest.approx(ka1)


def test_single_line_preset_and_aliases():
    assert Radiation.parse("CuKa1").wavelengths == (1.540593,)
    assert Radiation.parse("cu-k-alpha").name == "CuKa"
    assert Radiation.parse("Cu Ka1").name == "CuKa1"


def test_parse_wavelengths_and_neutrons():
    assert Radiation.parse("0.4137").wavelengths == (0.4137,)
    neu = Radiation.parse("neutron:1.594")
    assert neu.probe is Probe.NEUTRON and neu.wavelengths == (1.594,)
    two = Radiation.parse("1.5406:1,1.5444:0.5")
    assert two.wavelengths == (1.5406, 1.5444) and two.weights == (1.0, 0.5)
    assert two.mean_wavelength == pytest.approx((1.5406 + 0.5 * 1.5444) / 1.5)


@pytest.mark.parametrize("bad", ["CuKb", "", "abc", "-1", "neutron:CuKa", "1.5:x", "1e9"])
def test_parse_errors_are_specific(bad):
    with pytest.raises(RadiationError):
        Radiation.parse(bad)


def test_round_trip_dict():
    rad = Radiation.preset("MoKa")
    assert Radiation.from_dict(rad.to_dict()) == rad


def test_q_two_theta_round_trip_and_known_value():
    tt = np.array([10.0, 45.0, 120.0])
    q = two_theta_to_q(tt, 1.540593)
    assert q[1] == pytest.approx(4 * math.pi * math.sin(math.radians(22.5)) / 1.540593)
    np.testing.assert_allclose(q_to_two_theta(q, 1.540593), tt, rtol=0, atol=1e-12)
    assert np.isnan(q_to_two_theta(np.array([9.0]), 1.540593)[0])  # beyond 4π/λ


def test_geometry_aliases():
    assert Geometry.parse("capillary") is Geometry.DEBYE_SCHERRER
    assert Geometry.parse("BB") is Geometry.BRAGG_BRENTANO
    with pytest.raises(RadiationError):
        Geometry.parse("sideways")
