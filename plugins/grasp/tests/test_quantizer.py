import numpy as np
import pytest

from qvl_grasp.geometry import Grasp, angle_difference
from qvl_grasp.quantizer import Quantizer, bins_to_text, parse_answer


def test_round_trip_is_under_one_pixel_and_one_degree_at_640():
    rng = np.random.default_rng(0)
    quantizer = Quantizer(640, 480)
    worst_px, worst_deg = 0.0, 0.0
    for _ in range(5000):
        grasp = Grasp(cx=rng.uniform(0, 640), cy=rng.uniform(0, 480), theta=rng.uniform(-90, 90),
                      w=rng.uniform(1, 640), h=rng.uniform(1, 400))
        bins = quantizer.encode(grasp)
        assert all(0 <= b <= 1000 for b in bins) and 0 <= bins[2] <= 179
        back = quantizer.decode(bins)
        worst_px = max(worst_px, abs(back.cx - grasp.cx), abs(back.cy - grasp.cy), abs(back.w - grasp.w),
                       abs(back.h - grasp.h))
        worst_deg = max(worst_deg, angle_difference(back.theta, grasp.theta))
    assert worst_px < 1.0 and worst_px == pytest.approx(0.32, abs=0.01)  # half a 0.64 px step
    assert worst_deg < 1.0 and worst_deg == pytest.approx(0.5, abs=0.01)


def test_angle_bins_cover_0_to_179_and_wrap():
    quantizer = Quantizer(640, 480)
    assert quantizer.encode(Grasp(0, 0, -90, 0, 0))[2] == 0
    assert quantizer.encode(Grasp(0, 0, 89.4, 0, 0))[2] == 179
    assert quantizer.encode(Grasp(0, 0, 89.6, 0, 0))[2] == 0  # rounds to 90 == -90
    assert quantizer.decode((500, 500, 90, 100, 100)).theta == 0


def test_out_of_image_values_are_clamped():
    assert Quantizer(640, 480).encode(Grasp(-10, 900, 0, 2000, 10)) == (0, 1000, 90, 1000, 16)


@pytest.mark.parametrize(("text", "bins"), [
    ("512 304 27 118 246", (512, 304, 27, 118, 246)),
    ("0 0 0 0 0", (0, 0, 0, 0, 0)),
    ("1000 1000 179 1000 1000", (1000, 1000, 179, 1000, 1000)),
    ("1001 0 0 0 0", None), ("0 0 180 0 0", None), ("01 0 0 0 0", None), ("1 2 3 4", None),
    ("1 2 3 4 5 6", None), ("1  2 3 4 5", None), (" 1 2 3 4 5", None), ("1 2 3 4 5\n", None),
    ("The grasp is 1 2 3 4 5", None), ("", None),
])
def test_parse_answer_accepts_exactly_five_in_range_integers(text, bins):
    assert parse_answer(text) == bins
    if bins is not None:
        assert bins_to_text(bins) == text
