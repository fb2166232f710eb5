"""One progress value from the model's distribution over 0-100."""

import pytest

from qvl_vqa.answers import PROGRESS_ANSWERS, progress_from


def distribution(mass):
    probabilities = dict.fromkeys(PROGRESS_ANSWERS, 0.0)
    probabilities.update({str(k): v for k, v in mass.items()})
    return probabilities


def test_torn_between_0_and_100_the_median_and_mean_answer_between_them():
    torn = distribution({0: 0.45, 100: 0.35, 60: 0.2})
    assert progress_from(torn, "median") == 60  # cumulative 0.45 at 0, 0.65 at 60
    assert progress_from(torn, "mean") == 47  # 0.35 * 100 + 0.2 * 60
    assert progress_from(distribution({30: 1.0}), "median") == progress_from(distribution({30: 1.0}), "mean") == 30


def test_the_median_minimises_the_expected_absolute_error():
    mass = {5: 0.1, 20: 0.3, 50: 0.25, 90: 0.35}
    probabilities = distribution(mass)

    def expected_error(answer):
        return sum(p * abs(answer - value) for value, p in mass.items())

    best = min(range(101), key=expected_error)
    assert expected_error(progress_from(probabilities, "median")) == pytest.approx(expected_error(best))


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown progress rule 'mode'"):
        progress_from(distribution({1: 1.0}), "mode")
