"""The receptive-field benchmark's measurement, checked on hand-built models whose dependence is known."""

import numpy as np
import pytest
import torch

from experiments.receptive_field import BAND, GRID, sensitivity, summarise


class RowCopy(torch.nn.Module):
    """Output row ``i`` of every slice = ``weight[i] *`` the sum of electrode ``source[i]``'s input (known Jacobian)."""

    def __init__(self, source, weight):
        super().__init__()
        self.source = list(source)
        self.weight = torch.as_tensor(weight, dtype=torch.float32)

    def forward(self, x):  # x [B, W, E, F] -> [B, 2, GRID, GRID]
        per_electrode = x.sum(dim=(1, 3))                                   # [B, E]
        rows = per_electrode[:, self.source] * self.weight                  # [B, GRID]
        return rows[:, None, :, None].expand(x.shape[0], 2, GRID, GRID)


def test_sensitivity_recovers_a_known_jacobian():
    n_el, w, f = 8, 3, 5
    source = [i % n_el for i in range(GRID)]
    weight = np.linspace(1.0, 2.0, GRID)
    s = sensitivity(RowCopy(source, weight), torch.rand(2, w, n_el, f))
    expected = np.zeros((GRID // BAND, n_el))
    for i in range(GRID):
        # d sum(rows in band) / d x = weight[i] * 2 slices * GRID columns for each (window, freq) of the electrode,
        # summed over the batch (2), windows and frequencies
        expected[i // BAND, source[i]] += weight[i] * 2 * GRID * 2 * w * f
    np.testing.assert_allclose(s, expected, rtol=1e-5)


def test_summarise_on_handmade_maps():
    n_bands = GRID // BAND
    # 16 electrodes; output rows on electrode rows (bands 0-3) are 10x as sensitive as the rest; bands 12-15 are the
    # rows >= 32 below the last electrode
    s = np.ones((n_bands, 16))
    s[:4] *= 10
    out = summarise(s)
    assert out["near_far_ratio"] == pytest.approx(10.0)
    assert out["local_share"] == pytest.approx(out["uniform_share"])  # every electrode weighs the same
    assert out["other_half_share"] is None

    # 64 electrodes, each band driven only by the electrodes on its own rows: local share 1, other half 0
    s = np.zeros((n_bands, 64))
    for b in range(n_bands):
        s[b, b * BAND:(b + 1) * BAND] = 1.0
    out = summarise(s)
    assert out["near_far_ratio"] is None
    assert out["local_share"] == pytest.approx(1.0)
    assert out["other_half_share"] == pytest.approx(0.0)
    assert out["other_half_uniform"] == pytest.approx(0.5)

    # 64 electrodes weighted equally: the shares equal their uniform values
    out = summarise(np.ones((n_bands, 64)))
    assert out["local_vs_uniform"] == pytest.approx(1.0)
    assert out["other_half_share"] == pytest.approx(0.5)
