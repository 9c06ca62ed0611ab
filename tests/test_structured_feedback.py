"""Structured feedback for conv layers: the dense form of a conv, its mask, and the factorisations' guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from optodfa import structured_feedback as sf
from optodfa.dfa import convert
from optodfa.models import cnn
from optodfa.sim.digital import FeedbackMatrixError, feedback_matrix


@pytest.mark.parametrize(("c_out", "c_in", "k", "shape"), [(3, 2, 3, (5, 6)), (1, 1, 1, (4, 4)), (2, 3, 5, (7, 4))])
def test_dense_form_equals_the_convolution(c_out, c_in, k, shape):
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((c_out, c_in, k, k))
    images = rng.standard_normal((4, c_in, *shape))
    expected = F.conv2d(torch.from_numpy(images), torch.from_numpy(kernel), padding=k // 2).numpy()
    matrix = sf.conv_matrix(kernel, shape)
    assert matrix.shape == (c_out * shape[0] * shape[1], c_in * shape[0] * shape[1])
    np.testing.assert_allclose(matrix @ images.reshape(4, -1).T, expected.reshape(4, -1).T, atol=1e-12)


def test_mask_is_the_support_of_a_conv_and_has_the_counted_density():
    height, width, c_in, c_out = 6, 9, 2, 3
    mask = sf.connection_mask(c_in, c_out, 3, (height, width))
    kernel = np.random.default_rng(1).uniform(0.5, 1.5, size=(c_out, c_in, 3, 3))  # every tap non-zero
    support = sf.conv_matrix(kernel, (height, width)).toarray() != 0
    np.testing.assert_array_equal(mask.toarray() != 0, support)
    assert set(np.unique(mask.toarray())) == {0.0, 1.0}
    # Offsets -1, 0, +1 reach H-1, H, H-1 rows (zero padding): (3H-2)(3W-2) pixel pairs per channel pair.
    assert mask.nnz == c_out * c_in * (3 * height - 2) * (3 * width - 2)
    density = mask.nnz / np.prod(mask.shape)
    assert density == pytest.approx((3 * height - 2) * (3 * width - 2) / (height * width) ** 2)


def test_adjoint_satisfies_the_inner_product_identity():
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((3, 2, 3, 3))
    left, right = rng.standard_normal((3 * 20, 4)), rng.standard_normal((2 * 20, 4))
    dense = sf.conv_matrix(kernel, (4, 5)).toarray()
    adjoint = sf.conv_adjoint(left, right, kernel.shape, (4, 5))
    assert np.sum(dense * (left @ right.T)) == pytest.approx(np.sum(kernel * adjoint), rel=1e-12)


def test_svd_feedback_satisfies_the_alignment_condition_exactly():
    kernel_shape, image, d = (4, 3, 3, 3), (6, 6), 5
    b_in, b_out, info = sf.svd_feedback(kernel_shape, image, d, seed=7)
    assert b_in.shape == (3 * 36, d) and b_out.shape == (4 * 36, d)
    assert b_in.dtype == b_out.dtype == np.float64
    assert np.sqrt(np.mean(b_in ** 2)) == pytest.approx(1.0) and np.sqrt(np.mean(b_out ** 2)) == pytest.approx(1.0)
    dense = sf.conv_matrix(info["kernel"], image).toarray()
    # T(K_0)ᵀ B_l = B_{l-1} · c · S_d, column by column, with one constant c.
    back = dense.T @ b_out
    scale = np.sum(back * b_in, axis=0) / np.sum(b_in * b_in, axis=0)
    np.testing.assert_allclose(back, b_in * scale, atol=1e-9 * np.abs(back).max())
    np.testing.assert_allclose(scale / info["singular_values"], scale[0] / info["singular_values"][0], rtol=1e-9)
    # B_l B_{l-1}ᵀ is proportional to the best rank-d approximation of T(K_0) (Eckart–Young).
    u, s, vt = np.linalg.svd(dense, full_matrices=False)
    np.testing.assert_allclose(info["singular_values"], s[:d], rtol=1e-9)
    best = (u[:, :d] * s[:d]) @ vt[:d]
    product = b_out @ b_in.T
    np.testing.assert_allclose(product * (np.sum(best * product) / np.sum(product ** 2)), best,
                               atol=1e-9 * np.abs(best).max())
    # The best conv (M ∝ I) does at least as well as K_0 itself (M = c S_d, nearly ∝ I: the top singular values
    # of a conv are close together).
    cosine, kstar = sf.attainable_alignment(b_in, b_out, kernel_shape, image)
    at_k0 = np.sum(back * b_in) / (np.linalg.norm(back) * np.linalg.norm(b_in))
    assert kstar.shape == kernel_shape and 1.0 >= cosine >= at_k0 - 1e-12 and at_k0 > 0.99


def test_feedback_constructions_are_deterministic_in_their_seed():
    first = sf.svd_feedback((2, 2, 3, 3), (5, 5), 3, seed=1)
    np.testing.assert_array_equal(first[1], sf.svd_feedback((2, 2, 3, 3), (5, 5), 3, seed=1)[1])
    assert not np.allclose(first[1], sf.svd_feedback((2, 2, 3, 3), (5, 5), 3, seed=2)[1])
    mask = sf.mask_feedback((2, 3), 3, (5, 5), 3, seed=1, factorisation="nmf")
    np.testing.assert_array_equal(mask[0], sf.mask_feedback((2, 3), 3, (5, 5), 3, seed=1, factorisation="nmf")[0])


@pytest.mark.parametrize("factorisation", ["svd", "nmf"])
def test_mask_feedback_is_bounded_by_the_mask_factorisation(factorisation):
    c_in, c_out, image, d = 3, 4, (7, 7), 6
    b_in, b_out, info = sf.mask_feedback((c_in, c_out), 3, image, d, seed=3, factorisation=factorisation)
    pixels = image[0] * image[1]
    assert b_in.shape == (c_in * pixels, d) and b_out.shape == (c_out * pixels, d) and b_in.dtype == np.float64
    p, q = info["P"], info["Q"]
    if factorisation == "nmf":
        assert (p >= 0).all() and (q >= 0).all()
    # Signs only: |B_l| = a |P| on every channel, |B_{l-1}| = b |Q|ᵀ.
    a = np.linalg.norm(b_out) / (np.sqrt(c_out) * np.linalg.norm(p))
    b = np.linalg.norm(b_in) / (np.sqrt(c_in) * np.linalg.norm(q))
    np.testing.assert_allclose(np.abs(b_out).reshape(c_out, pixels, d), np.broadcast_to(a * np.abs(p), (c_out,
                               pixels, d)), rtol=1e-12)
    bound = a * b * np.kron(np.ones((c_out, c_in)), np.abs(p) @ np.abs(q))
    assert (np.abs(b_out @ b_in.T) <= bound * (1 + 1e-12) + 1e-15).all()
    # The signs differ between channels, so the channels do not all receive one feedback.
    assert not np.array_equal(b_out[:pixels], b_out[pixels:2 * pixels])


def test_nmf_feedback_concentrates_in_the_mask_unlike_random_feedback():
    c, image, d = 4, (10, 10), 10
    mask = sf.connection_mask(c, c, 3, image).toarray() > 0
    b_in, b_out, _ = sf.mask_feedback((c, c), 3, image, d, seed=0, factorisation="nmf")
    random = feedback_matrix(2 * c * 100, d, seed=0, dtype=torch.float64).numpy()

    def inside(product: np.ndarray) -> float:
        return float(np.abs(product)[mask].sum() / np.abs(product).sum())

    density = mask.mean()
    assert inside(random[c * 100:] @ random[:c * 100].T) == pytest.approx(density, rel=0.2)
    assert inside(b_out @ b_in.T) > 4 * density


def test_attainable_alignment_separates_random_from_structured_feedback():
    kernel_shape, image, d = (4, 4, 3, 3), (8, 8), 10
    pixels = 64
    random = feedback_matrix(8 * pixels, d, seed=5, dtype=torch.float64).numpy()
    cosine, _ = sf.attainable_alignment(random[:4 * pixels], random[4 * pixels:], kernel_shape, image)
    # A random target's share in a subspace of dimension C_out·C_in·k² out of C_in·H·W·d.
    expected = np.sqrt(np.prod(kernel_shape) / (4 * pixels * d))
    assert cosine == pytest.approx(expected, rel=0.25)
    # SVD of the mask: symmetric kernels (I, G_1 ⊗ I + I ⊗ G_1, G_1 ⊗ G_1) map each mode of the mask to a multiple
    # of itself, so 3·C_out free numbers per input channel meet the d conditions when the signs are generic.
    b_in, b_out, _ = sf.mask_feedback((8, 8), 3, image, d, seed=5, factorisation="svd")
    assert sf.attainable_alignment(b_in, b_out, (8, 8, 3, 3), image)[0] == pytest.approx(1.0, abs=1e-6)


def test_feedback_file_matrix_stacks_blocks_and_checks_their_shapes():
    blocks = [np.ones((6, 2)), np.zeros((4, 2))]
    stacked = sf.feedback_file_matrix(blocks, [6, 4], 2)
    assert stacked.shape == (10, 2) and stacked.dtype == np.float64 and stacked[:6].all() and not stacked[6:].any()
    with pytest.raises(ValueError, match=r"hidden layer 2 must have shape \(n_l, d\) = \(5, 2\), got \(4, 2\)"):
        sf.feedback_file_matrix(blocks, [6, 5], 2)
    with pytest.raises(ValueError, match="one feedback block per hidden layer \\(3\\), got 2"):
        sf.feedback_file_matrix(blocks, [6, 4, 1], 2)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"kernel must have shape \(C_out, C_in, k, k\) with odd k, got \(2, 2, 2, 2"):
        sf.conv_matrix(np.ones((2, 2, 2, 2)), (4, 4))
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W\), got \(4,\)"):
        sf.conv_matrix(np.ones((1, 1, 3, 3)), (4,))
    with pytest.raises(ValueError, match="factorisation"):
        sf.mask_feedback((2, 2), 3, (4, 4), 2, seed=0, factorisation="pca")
    with pytest.raises(ValueError, match="d"):
        sf.svd_feedback((1, 1, 3, 3), (3, 3), 9, seed=0)
    with pytest.raises(ValueError, match=r"b_in and b_out must have shapes \(C_in·H·W, d\) = \(32, d\)"):
        sf.attainable_alignment(np.ones((31, 2)), np.ones((16, 2)), (1, 2, 3, 3), (4, 4))
    with pytest.raises(ValueError, match=r"left and right must have shapes"):
        sf.conv_adjoint(np.ones((16, 2)), np.ones((16, 3)), (1, 1, 3, 3), (4, 4))


def test_a_feedback_file_for_another_cnn_is_refused_with_both_shapes(tmp_path):
    b_in, b_out, _ = sf.svd_feedback((4, 4, 3, 3), (6, 6), 10, seed=0)
    path = tmp_path / "B.npy"
    np.save(path, sf.feedback_file_matrix([b_in, b_out], [4 * 36, 4 * 36], 10))
    network = cnn((1, 6, 6), 10, channels=(4, 4), activation="tanh")
    model, _ = convert(network, (1, 6, 6), overrides={"matrix_file": str(path)})
    torch.testing.assert_close(model.projector.effective_matrix(), torch.from_numpy(np.load(path)).float())
    other = cnn((1, 6, 6), 10, channels=(4, 8), activation="tanh")
    with pytest.raises(FeedbackMatrixError, match=r"must have shape \(D, d\) = \(432, 10\) .* got \(288, 10\)"):
        convert(other, (1, 6, 6), overrides={"matrix_file": str(path)})
