"""Feedback matrices for two consecutive conv layers that a conv layer can align to (SPEC §6.5).

Why DFA fails on convolutional layers (Refinetti, d'Ascoli, Ohana & Goldt, "Align, then memorise: the dynamics of
learning with feedback alignment", ICML 2021). DFA's fixed point for a hidden layer ``l`` fed by hidden layer
``l-1`` is ``W_l ∝ B_l A B_{l-1}ᵀ`` (``A`` a ``d × d`` matrix); there the BP signal of layer ``l-1``,
``W_lᵀ (B_l e ⊙ f'_l)``, points along its DFA signal ``B_{l-1} e`` (gradient alignment), because
``W_lᵀ B_l ∝ B_{l-1} Aᵀ B_lᵀ B_l`` and ``B_lᵀ B_l ≈ n_l I`` for random ``B_l``. The condition that matters is
therefore ``W_lᵀ B_l ≈ B_{l-1} M`` for some ``d × d`` matrix ``M``.

Written as a matrix ``T(K)`` of shape ``(C_out·H·W, C_in·H·W)`` (:func:`conv_matrix`), a conv layer with kernel
``K`` of shape ``(C_out, C_in, k, k)`` is block-sparse (locality: an output pixel sees a ``k × k`` neighbourhood,
:func:`connection_mask`) and Toeplitz (weight sharing: every position uses the same ``C_out·C_in·k²`` numbers).
Such matrices form a subspace of dimension ``C_out·C_in·k²`` out of ``C_out·C_in·(HW)²``, and DFA's update of a
conv layer is the dense update ``δa_l h_{l-1}ᵀ`` pushed into it (:func:`conv_adjoint`). For dense random ``B`` the
target ``B_l A B_{l-1}ᵀ`` lies almost wholly outside the subspace, and no conv layer meets the condition: the best
one reaches ``cos(T(K)ᵀ B_l, B_{l-1}) ≈ sqrt(C_out·C_in·k² / (C_in·H·W·d))``, the share of a random vector that
a subspace of that dimension holds (:func:`attainable_alignment`).

"Compatible with the conv structure" means here: some conv kernel ``K`` satisfies ``T(K)ᵀ B_l ∝ B_{l-1}``
(:func:`attainable_alignment` near 1), so that the fixed point exists inside the set the conv weights can reach.
``B_l B_{l-1}ᵀ`` itself cannot equal a conv matrix: it has rank at most ``d``, while a non-zero conv matrix on an
``H × W`` image has rank of order ``HW``. The constructions are low-rank factorisations, as the authors' code
tries (SVD, or NMF of the mask of allowed connections):

* :func:`svd_feedback`: the top ``d`` singular triplets of ``T(K_0)`` for a random kernel ``K_0`` (from the seed):
  ``B_l ∝ U_d S_d^{1/2}``, ``B_{l-1} ∝ V_d S_d^{1/2}``. Guaranteed: ``T(K_0)ᵀ B_l = B_{l-1} · c · S_d`` exactly
  (``c`` a scalar; the top singular values of a conv are close together, so ``M`` is nearly ``∝ I``), and
  ``B_l B_{l-1}ᵀ ∝`` the best rank-``d`` approximation of ``T(K_0)`` (Eckart–Young).
* :func:`mask_feedback`: a rank-``d`` factorisation ``G ≈ P Q`` of the spatial mask (``G[p, q] = 1`` when input
  pixel ``q`` lies in the ``k × k`` window of output pixel ``p``) by SVD (its smoothest modes) or NMF (local,
  non-negative blobs), lifted to channels with random signs (without them every channel would receive the same
  feedback). Guaranteed: ``|B_l B_{l-1}ᵀ| ≤ 1 ⊗ Σ_j |P_j| |Q_j|`` entrywise (up to the scale), so the product is
  small wherever the factorisation of the mask is. For the SVD, symmetric kernels (combinations of ``I``,
  ``G_1 ⊗ I + I ⊗ G_1`` and ``G_1 ⊗ G_1``, ``G_1`` the 1-D mask) map each mode of ``G`` to a multiple of itself,
  so ``3·C_out`` numbers per input channel can meet the ``d`` conditions: the condition is attainable exactly
  when that ``d × 3·C_out`` system has full rank (``3·C_out ≥ d`` and sign patterns that differ enough; with
  ``C_out = 4``, ``d = 10`` some seeds reach only 0.95). The NMF's blobs are not eigenvectors of any conv, so
  it is attainable only in part. :func:`attainable_alignment` measures it for any ``B``.

That a conv layer *can* meet the condition is necessary for alignment, not sufficient: DFA must also move the
representations ``h_{l-1}`` along ``B_{l-1} e`` (that is how the fixed point ``B_l A B_{l-1}ᵀ`` builds up in an
MLP), and a conv layer below, with its few shared weights, cannot produce an arbitrary class-dependent image.
``experiments/cnn_failure.py`` measures whether the structured ``B`` restore gradient alignment.

Matrices act on images flattened in ``(C, H, W)`` order (row-major), the order in which a DFA feedback point of
shape ``(C, H, W)`` takes its slice of ``B e``. Convolutions are stride 1 with ``same`` zero padding, odd ``k``
(:func:`optodfa.models.cnn`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from optodfa.validation import check_choice, check_int, check_memory

__all__ = [
    "attainable_alignment",
    "connection_mask",
    "conv_adjoint",
    "conv_matrix",
    "feedback_file_matrix",
    "mask_feedback",
    "spatial_mask",
    "svd_feedback",
]


def _check_image(image_shape: tuple[int, int]) -> tuple[int, int]:
    if len(image_shape) != 2:
        raise ValueError(f"image_shape must be (H, W), got {tuple(image_shape)}")
    return check_int("image height", image_shape[0], low=1), check_int("image width", image_shape[1], low=1)


def _check_kernel(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != kernel.shape[3] or kernel.shape[2] % 2 == 0 or 0 in kernel.shape:
        raise ValueError(f"kernel must have shape (C_out, C_in, k, k) with odd k, got {kernel.shape}")
    if not np.issubdtype(kernel.dtype, np.floating) or not np.isfinite(kernel).all():
        raise ValueError(f"kernel must hold finite floats, got dtype {kernel.dtype}")
    return kernel.astype(np.float64)


def _check_conv_geometry(kernel_shape: tuple[int, int, int, int],
                         image_shape: tuple[int, int]) -> tuple[int, int, int, int, int]:
    """``(C_out, C_in, k, H, W)`` from a kernel shape ``(C_out, C_in, k, k)`` (odd ``k``) and an image shape."""
    c_out, c_in, k, k2 = (check_int("kernel_shape entry", v, low=1) for v in kernel_shape)
    if k != k2 or k % 2 == 0:
        raise ValueError(f"kernel_shape must be (C_out, C_in, k, k) with odd k, got {tuple(kernel_shape)}")
    height, width = _check_image(image_shape)
    return c_out, c_in, k, height, width


def _check_pair(first: np.ndarray, second: np.ndarray, *, names: tuple[str, str],
                channels: tuple[tuple[str, int], tuple[str, int]], pixels: int, column: str,
                where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Two float64 matrices of shapes ``(C_a·H·W, m)`` and ``(C_b·H·W, m)``, one ``m`` for both.

    ``channels`` names each matrix's channel count and gives it (``("C_in", 8)``); ``pixels`` is ``H·W``;
    ``column`` names ``m`` and ``where`` ends the error's description of what was expected.
    """
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    (label_a, count_a), (label_b, count_b) = channels
    rows_a, rows_b = count_a * pixels, count_b * pixels
    if first.ndim != 2 or second.ndim != 2 or first.shape[0] != rows_a or second.shape[0] != rows_b \
            or first.shape[1] != second.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must have shapes ({label_a}·H·W, {column}) = ({rows_a}, "
                         f"{column}) and ({label_b}·H·W, {column}) = ({rows_b}, {column}){where}, got {first.shape} "
                         f"and {second.shape}")
    return first, second


def _taps(k: int, height: int, width: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Per kernel tap ``(i, j)``: output and input pixel indices (flattened ``y·W + x``) it connects."""
    pad = k // 2
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    taps = []
    for i in range(k):
        for j in range(k):
            yi, xi = ys + i - pad, xs + j - pad  # conv2d is a cross-correlation: out[y, x] += K[i, j] in[y+i-p, x+j-p]
            inside = (yi >= 0) & (yi < height) & (xi >= 0) & (xi < width)
            taps.append((i, j, (ys * width + xs)[inside], (yi * width + xi)[inside]))
    return taps


def conv_matrix(kernel: np.ndarray, image_shape: tuple[int, int]) -> scipy.sparse.csr_matrix:
    """The dense form ``T(K)`` of a stride-1 ``same``-padded convolution, stored sparse.

    Args:
        kernel: ``K``, shape ``(C_out, C_in, k, k)``, odd ``k`` (``torch.nn.Conv2d.weight``, no bias).
        image_shape: ``(H, W)`` of the input (and output) images in pixels.

    Returns:
        ``T`` of shape ``(C_out·H·W, C_in·H·W)`` (float64, CSR) with ``T @ x.ravel() == conv2d(x, K).ravel()``
        for an image ``x`` of shape ``(C_in, H, W)``; at most ``C_out·C_in·k²·H·W`` non-zeros.
    """
    kernel = _check_kernel(kernel)
    height, width = _check_image(image_shape)
    c_out, c_in, k, _ = kernel.shape
    pixels = height * width
    rows, cols, values = [], [], []
    for i, j, out_pix, in_pix in _taps(k, height, width):
        for co in range(c_out):
            for ci in range(c_in):
                rows.append(co * pixels + out_pix)
                cols.append(ci * pixels + in_pix)
                values.append(np.full(out_pix.size, kernel[co, ci, i, j]))
    matrix = scipy.sparse.coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                                     shape=(c_out * pixels, c_in * pixels))
    return matrix.tocsr()  # duplicates cannot occur: each (output, input, tap) triple is listed once


def conv_adjoint(left: np.ndarray, right: np.ndarray, kernel_shape: tuple[int, int, int, int],
                 image_shape: tuple[int, int]) -> np.ndarray:
    """The adjoint ``T*`` of ``K ↦ T(K)`` applied to ``M = left @ rightᵀ``: ``⟨T(K), M⟩ = ⟨K, T*(M)⟩`` for all ``K``.

    ``T*(M)`` is the direction in kernel space closest to ``M`` (a conv layer's share of a dense update: its
    gradient is ``T*(δa hᵀ)``), so ``cos(K, T*(B_l B_{l-1}ᵀ))`` is a conv layer's weight alignment in its own space.
    ``M`` is given by factors so that a low-rank ``B_l B_{l-1}ᵀ`` is never formed (pass ``right = I`` for a
    dense ``M``).

    Args:
        left: ``(C_out·H·W, r)``. right: ``(C_in·H·W, r)``.
        kernel_shape: ``(C_out, C_in, k, k)``, odd ``k``. image_shape: ``(H, W)``.

    Returns:
        ``(C_out, C_in, k, k)`` float64.
    """
    c_out, c_in, k, height, width = _check_conv_geometry(kernel_shape, image_shape)
    pixels = height * width
    left, right = _check_pair(left, right, names=("left", "right"), channels=(("C_out", c_out), ("C_in", c_in)),
                              pixels=pixels, column="r",
                              where=f" for kernel {tuple(kernel_shape)} on {height} × {width} images")
    rank = left.shape[1]
    left, right = left.reshape(c_out, pixels, rank), right.reshape(c_in, pixels, rank)
    result = np.zeros((c_out, c_in, k, k))
    for i, j, out_pix, in_pix in _taps(k, height, width):
        result[:, :, i, j] = np.einsum("opr,ipr->oi", left[:, out_pix], right[:, in_pix])
    return result


def spatial_mask(kernel_size: int, image_shape: tuple[int, int]) -> scipy.sparse.csr_matrix:
    """``G`` of shape ``(H·W, H·W)``: 1 where input pixel ``q`` is in output pixel ``p``'s ``k × k`` window."""
    kernel_size = check_int("kernel_size", kernel_size, low=1)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
    return conv_matrix(np.ones((1, 1, kernel_size, kernel_size)), image_shape)


def connection_mask(in_channels: int, out_channels: int, kernel_size: int,
                    image_shape: tuple[int, int]) -> scipy.sparse.csr_matrix:
    """The mask of allowed connections of a conv layer: 1 where ``T(K)`` may be non-zero, 0 elsewhere.

    Returns:
        ``(C_out·H·W, C_in·H·W)`` float64 CSR, equal to ``1_{C_out × C_in} ⊗ G`` (:func:`spatial_mask`); its
        density is about ``k² / (H·W)`` (less at the borders).
    """
    in_channels = check_int("in_channels", in_channels, low=1)
    out_channels = check_int("out_channels", out_channels, low=1)
    return scipy.sparse.kron(np.ones((out_channels, in_channels)), spatial_mask(kernel_size, image_shape),
                             format="csr")


def _unit_rms(block: np.ndarray) -> np.ndarray:
    """Scale ``block`` to RMS entry 1, the entry variance of a Gaussian ``B``, so the feedback's magnitude (the
    hidden layers' effective learning rate under ``feedback_scale="auto"``) matches a random ``B``'s."""
    return block * np.sqrt(block.size) / np.linalg.norm(block)


def svd_feedback(kernel_shape: tuple[int, int, int, int], image_shape: tuple[int, int], d: int, *,
                 seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``B_{l-1}, B_l`` from the top ``d`` singular triplets of a random conv matrix ``T(K_0)``.

    ``K_0`` has i.i.d. N(0, 1) taps drawn from ``seed``. With ``T(K_0) ≈ U_d S_d V_dᵀ``: ``B_l = a U_d S_d^{1/2}``
    and ``B_{l-1} = b V_d S_d^{1/2}``, ``a, b > 0`` chosen for RMS entry 1. Then ``T(K_0)ᵀ B_l = B_{l-1} (a/b) S_d``
    exactly, and ``B_l B_{l-1}ᵀ = ab U_d S_d V_dᵀ``.

    Args:
        kernel_shape: ``(C_out, C_in, k, k)`` of layer ``l``'s conv (it maps layer ``l-1``'s activations to
            layer ``l``'s pre-activations). image_shape: ``(H, W)``.
        d: the error dimension (number of classes); at most ``min(C_out, C_in)·H·W − 1``.
        seed: seed of ``K_0`` and of the solver's start vector.

    Returns:
        ``B_in`` (= ``B_{l-1}``) of shape ``(C_in·H·W, d)``, ``B_out`` (= ``B_l``) of shape ``(C_out·H·W, d)``,
        both float64, and ``{"kernel": K_0, "singular_values": S_d (descending)}``.
    """
    c_out, c_in, k, k2 = (check_int("kernel_shape entry", v, low=1) for v in kernel_shape)
    height, width = _check_image(image_shape)
    limit = min(c_out, c_in) * height * width - 1
    d = check_int("d", d, low=1, high=limit)
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((c_out, c_in, k, k2))
    matrix = conv_matrix(kernel, (height, width))
    u, s, vt = scipy.sparse.linalg.svds(matrix, k=d, v0=rng.standard_normal(min(matrix.shape)), tol=1e-10,
                                        maxiter=20 * min(matrix.shape))
    order = np.argsort(s)[::-1]
    u, s, v = u[:, order], s[order], vt[order].T
    # A singular pair's sign is arbitrary; fix it (largest |entry| of u positive) so a seed gives one matrix.
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(d)])
    u, v = u * signs, v * signs
    root = np.sqrt(s)
    return _unit_rms(v * root), _unit_rms(u * root), {"kernel": kernel, "singular_values": s}


FACTORISATIONS = ("svd", "nmf")


def mask_feedback(channels: tuple[int, int], kernel_size: int, image_shape: tuple[int, int], d: int, *,
                  seed: int, factorisation: str = "svd") -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``B_{l-1}, B_l`` from a rank-``d`` factorisation ``G ≈ P Q`` of the spatial mask, lifted with random signs.

    ``factorisation="svd"``: ``P = U_d S_d^{1/2}``, ``Q = S_d^{1/2} V_dᵀ`` (the smoothest modes of the mask: the
    best rank-``d`` approximation of ``G``). ``"nmf"``: ``P, Q ≥ 0`` from scikit-learn's NMF (local blobs).
    Channels: ``B_l[(c, p), j] = σ_l[c, j] P[p, j]``, ``B_{l-1}[(c', q), j] = σ_{l-1}[c', j] Q[j, q]`` with i.i.d.
    signs ``σ = ±1`` from ``seed`` (without them every channel would receive the same feedback); both blocks
    scaled to RMS entry 1. Then ``B_l B_{l-1}ᵀ = Σ_j (σ_{l,j} σ_{l-1,j}ᵀ) ⊗ (P_j Q_j)``, so
    ``|B_l B_{l-1}ᵀ| ≤ ab · 1 ⊗ Σ_j |P_j| |Q_j|`` entrywise (``= ab · 1 ⊗ P Q`` for NMF): it is small wherever the
    factorisation of the mask is.

    Args:
        channels: ``(C_in, C_out)`` of layer ``l``'s conv. kernel_size: odd ``k``. image_shape: ``(H, W)``.
        d: the error dimension; at most ``H·W − 1``.
        seed: seed of the signs (and of the factorisation's start vector).
        factorisation: ``"svd"`` or ``"nmf"``.

    Returns:
        ``B_in`` ``(C_in·H·W, d)``, ``B_out`` ``(C_out·H·W, d)`` (float64) and ``{"P": P, "Q": Q}``.
    """
    check_choice("factorisation", factorisation, FACTORISATIONS)
    c_in, c_out = (check_int("channels entry", c, low=1) for c in channels)
    height, width = _check_image(image_shape)
    d = check_int("d", d, low=1, high=height * width - 1)
    mask = spatial_mask(kernel_size, (height, width))
    rng = np.random.default_rng(seed)
    if factorisation == "svd":
        u, s, vt = scipy.sparse.linalg.svds(mask, k=d, v0=rng.standard_normal(height * width), tol=1e-10,
                                            maxiter=20 * height * width)
        order = np.argsort(s)[::-1]
        signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(d)])[order]
        p, q = u[:, order] * signs * np.sqrt(s[order]), (vt[order].T * signs * np.sqrt(s[order])).T
    else:
        from sklearn.decomposition import NMF  # only this construction needs it

        model = NMF(n_components=d, init="nndsvda", max_iter=2000, tol=1e-6, random_state=int(rng.integers(2**31)))
        p = model.fit_transform(mask)
        q = model.components_
    b_out = (rng.choice([-1.0, 1.0], size=(c_out, 1, d)) * p[None]).reshape(c_out * height * width, d)
    b_in = (rng.choice([-1.0, 1.0], size=(c_in, 1, d)) * q.T[None]).reshape(c_in * height * width, d)
    if not (np.linalg.norm(b_out) > 0 and np.linalg.norm(b_in) > 0):
        raise RuntimeError(f"{factorisation} of the {height} × {width} mask with rank {d} returned a zero factor")
    return _unit_rms(b_in), _unit_rms(b_out), {"P": p, "Q": q}


def attainable_alignment(b_in: np.ndarray, b_out: np.ndarray, kernel_shape: tuple[int, int, int, int],
                         image_shape: tuple[int, int]) -> tuple[float, np.ndarray]:
    """``max_K cos(vec T(K)ᵀ B_l, vec B_{l-1})``: how well any conv layer can satisfy the alignment condition.

    The BP signal a conv layer ``l`` sends back is ``T(K)ᵀ`` of its own; DFA's fixed point needs
    ``T(K)ᵀ B_l ∝ B_{l-1}`` (``M ∝ I`` here). ``T(K)ᵀ B_l`` is linear in the ``C_out·C_in·k²`` taps of ``K``, so the
    maximum is a least-squares fit over them. 1 means some conv layer aligns exactly; dense random ``B`` give
    about ``sqrt(C_out·C_in·k² / (C_in·H·W·d))``-sized values (the share of a random vector that a subspace of
    that dimension holds).

    Args:
        b_in: ``B_{l-1}``, ``(C_in·H·W, d)``. b_out: ``B_l``, ``(C_out·H·W, d)``.
        kernel_shape: ``(C_out, C_in, k, k)``. image_shape: ``(H, W)``.

    Returns:
        The cosine in ``[0, 1]`` and the kernel ``K*`` that attains it (``(C_out, C_in, k, k)``, defined up to a
        positive factor: the conv layer DFA would have to reach).
    """
    c_out, c_in, k, height, width = _check_conv_geometry(kernel_shape, image_shape)
    pixels = height * width
    b_in, b_out = _check_pair(b_in, b_out, names=("b_in", "b_out"), channels=(("C_in", c_in), ("C_out", c_out)),
                              pixels=pixels, column="d")
    d = b_in.shape[1]
    check_memory(f"attainable_alignment for kernel {tuple(kernel_shape)} on {height} × {width} images, d = {d}",
                 3 * 8.0 * c_out * c_in * k * k * c_in * pixels * d)
    out = b_out.reshape(c_out, pixels, d)
    # Column (co, ci, tap) of the map K -> T(K)ᵀ B_l: B_l's rows of output channel co moved to input channel ci.
    columns = np.zeros((c_out, c_in, k * k, c_in, pixels, d))
    for t, (_, _, out_pix, in_pix) in enumerate(_taps(k, height, width)):
        for ci in range(c_in):
            columns[:, ci, t, ci][:, in_pix] = out[:, out_pix]
    design = columns.reshape(c_out * c_in * k * k, -1).T
    target = b_in.ravel()
    taps, *_ = np.linalg.lstsq(design, target, rcond=None)
    fit = design @ taps
    norm = np.linalg.norm(fit) * np.linalg.norm(target)
    cosine = float(np.clip(fit @ target / norm, 0.0, 1.0)) if norm > 0 else 0.0
    return cosine, taps.reshape(c_out, c_in, k, k)


def feedback_file_matrix(blocks: list[np.ndarray], sizes: list[int], d: int) -> np.ndarray:
    """Stack per-layer blocks ``B_1 … B_{L-1}`` into the ``(D, d)`` float64 matrix a ``feedback_file`` holds.

    Args:
        blocks: ``B_l`` of shape ``(n_l, d)`` in layer order (``n_l = C·H·W`` for a conv point).
        sizes: the ``n_l`` the model's feedback points need (``DFAModel.hidden[i].size``).
        d: the output width.

    Raises:
        ValueError: a block's shape is not ``(n_l, d)`` (names the layer, what was expected and what came).
    """
    if len(blocks) != len(sizes):
        raise ValueError(f"need one feedback block per hidden layer ({len(sizes)}), got {len(blocks)}")
    for i, (block, size) in enumerate(zip(blocks, sizes, strict=True)):
        if np.shape(block) != (size, d):
            raise ValueError(f"feedback block of hidden layer {i + 1} must have shape (n_l, d) = {(size, d)}, got "
                             f"{np.shape(block)}")
    return np.concatenate([np.asarray(b, dtype=np.float64) for b in blocks], axis=0)
