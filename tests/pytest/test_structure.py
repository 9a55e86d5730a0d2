"""The verdict on structure (shopper_segments.model.structure): the rule, and the verdict on data whose
answer is known: separated groups (clear) and one continuum (none). Features are drawn directly,
no warehouse; the verdict on generated shoppers through the real pipeline is in test_worlds.py."""

from __future__ import annotations

import numpy as np
import pytest

from shopper_segments.model import structure


def test_the_documented_rule():
    assert structure.decide(0.20, 1.0) == "clear"
    assert structure.decide(0.20, 0.9) == "weak"  # one bootstrap where the null does as well
    assert structure.decide(structure.CLEAR_EXCESS - 0.001, 1.0) == "weak"
    assert structure.decide(structure.WEAK_EXCESS, structure.WEAK_WIN_SHARE) == "weak"
    assert structure.decide(structure.WEAK_EXCESS - 0.001, 1.0) == "none"
    assert structure.decide(0.05, 0.8) == "none"


def test_permuting_keeps_every_marginal_and_removes_the_dependence():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000)
    space = np.column_stack([x, x + 0.1 * rng.standard_normal(5000)])
    shuffled = structure.permuted(space, np.random.default_rng(1))
    for column in range(2):
        np.testing.assert_array_equal(np.sort(shuffled[:, column]), np.sort(space[:, column]))
    assert np.corrcoef(space.T)[0, 1] > 0.99 and abs(np.corrcoef(shuffled.T)[0, 1]) < 0.05


def test_separated_groups_are_clear_and_a_continuum_is_not():
    rng = np.random.default_rng(3)
    centres = np.eye(4) * 4.0
    groups = np.repeat(centres, 750, axis=0) + rng.standard_normal((3000, 4))
    clear = structure.structure_verdict(groups, k=4, random_state=1, bootstraps=5, sample_size=2000)
    assert clear.verdict == "clear"
    assert clear.observed_silhouette > clear.null_silhouette + structure.CLEAR_EXCESS
    # A continuum: skewed, heavy-tailed, correlated, with a mass at zero, but one population.
    latent = rng.standard_normal((3000, 1))
    continuum = np.column_stack([
        np.exp(latent[:, 0] + 0.5 * rng.standard_normal(3000)),
        latent[:, 0] + rng.standard_normal(3000),
        np.maximum(latent[:, 0] + rng.standard_normal(3000) - 1.0, 0.0),
        rng.standard_normal(3000),
    ])
    continuum = (continuum - continuum.mean(axis=0)) @ np.linalg.svd(np.cov(continuum.T))[0]  # principal axes
    for k in (2, 4, 6):
        flat = structure.structure_verdict(continuum, k=k, random_state=1, bootstraps=5, sample_size=2000)
        assert flat.verdict != "clear", (k, flat)
    metrics = flat.metrics()
    assert metrics["structure_silhouette_excess"] == pytest.approx(flat.observed_silhouette - flat.null_silhouette)
    assert metrics["structure_bootstraps"] == 5
