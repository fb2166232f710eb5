import numpy as np

from qvl_grasp.baselines import baseline_grasp, min_area_rect_grasp, pca_grasp
from qvl_grasp.geometry import angle_difference
from qvl_grasp.scoring import summarize
from qvl_grasp.synthetic import render_scene


def scenes(count):
    rng = np.random.default_rng(11)
    return [render_scene(rng, 320, 240) for _ in range(count)]


def test_pca_and_min_area_rect_find_the_axis_of_a_bar():
    import math

    mask = np.zeros((100, 200), dtype=bool)
    for y in range(100):  # a bar at 30 degrees (counter-clockwise as seen), 120 long, 20 thick
        for x in range(200):
            u = (x - 100) * math.cos(math.radians(30)) - (y - 50) * math.sin(math.radians(30))
            v = (x - 100) * math.sin(math.radians(30)) + (y - 50) * math.cos(math.radians(30))
            mask[y, x] = abs(u) <= 60 and abs(v) <= 10
    for grasp in (pca_grasp(mask, jaw=8), min_area_rect_grasp(mask, jaw=8)):
        assert angle_difference(grasp.theta, 30 + 90) < 2  # across the bar
        assert abs(grasp.cx - 100) < 1.5 and abs(grasp.cy - 50) < 1.5
        assert 20 < grasp.w < 30  # the thickness, opened 1.3 times


def test_baselines_are_ordered_as_expected_on_synthetic_scenes():
    data = scenes(40)
    truths = [grasps for _, _, grasps in data]
    rng = np.random.default_rng(0)
    opening = float(np.median([g.w for gs in truths for g in gs]))
    jaw = float(np.median([g.h for gs in truths for g in gs]))
    rates = {name: summarize([baseline_grasp(name, mask, rng, opening, jaw) for _, mask, _ in data],
                             truths)["success_rate"] for name in ("random", "pca", "min_area_rect")}
    assert rates["pca"] > 0.9 and rates["min_area_rect"] > 0.9
    assert rates["random"] < 0.4
