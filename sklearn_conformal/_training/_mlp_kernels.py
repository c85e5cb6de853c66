"""numba epochs of CoCP's default networks: forward, loss, backward, clipping and AdamW in one call.

A CoCP phase trains a 2 x 64 ReLU network on minibatches of 512 rows, thousands of epochs per
fold. In torch a step is some thirty operator calls, and even with hand-written gradients
(:mod:`._direct`) and a fused optimiser the calls cost more than their arithmetic. Here a whole
training epoch (every minibatch of a permutation drawn by the caller) is one compiled call; the
matrix products go to BLAS (scipy's OpenBLAS ``sgemm``, which the caller keeps to one thread, so
that the products are the same in every fold and run), everything else is loops.

The arithmetic is torch's semantics, not its roundings: ``Linear`` layers ``x W^T + b``, ReLU,
the radius head ``softplus(g) + floor`` (threshold 20), the three built-in losses with autograd's
gradients (the pinball loss's tie splits the gradient in half), ``clip_grad_norm_`` (norm of all
gradients, factor ``max_norm / (norm + 1e-6)`` when below one) and decoupled-weight-decay
``AdamW``. Reductions (bias gradients, norms, loss means) accumulate in float64; parameters,
gradients and optimiser moments are float32, as in torch.

The parameters live in one flat float32 vector in ``module.parameters()`` order: for each linear
layer its ``(out, in)`` weight row by row, then its bias. ``sizes`` lists the widths,
``(n_features, hidden..., 1)``.
"""

import numpy as np
from numba import types
from numba.np.linalg import _BLAS

from .._numba import jit

__all__ = ["LOSS_CODES", "evaluate_loss", "loss_gradient", "train_epoch"]

# the built-in criteria as the kernels' codes
LOSS_CODES = {"mse": 0, "folded_pinball": 1, "soft_coverage": 2}

# F.softplus's default threshold: above it softplus(x) = x
_SOFTPLUS_THRESHOLD = 20.0

# the float32 GEMM behind numba's np.dot (scipy's BLAS through numba's helper library), called
# directly: np.dot's generic implementation (layout checks, gemv and dot special cases, a fresh
# result) takes seconds to compile per pair of operand layouts
_gemm = _BLAS().numba_xxgemm(types.float32)
_SINGLE, _NOTRANS, _TRANS = ord("s"), ord("n"), ord("t")


@jit()
def _product(transa, transb, m, n, k, a, lda, b, ldb, beta, out, ldc):
    """BLAS ``out = op(a) op(b) + beta out`` in column-major terms (``out`` is m x n): a
    row-major product ``P = A B`` is the column-major ``P^T = B^T A^T``, so callers pass the
    right operand first."""
    one = np.ones(1, dtype=np.float32)
    scale = np.full(1, beta, dtype=np.float32)
    status = _gemm(
        _SINGLE, transa, transb, m, n, k, one.ctypes, a.ctypes, lda, b.ctypes, ldb,
        scale.ctypes, out.ctypes, ldc,
    )
    if status != 0:
        raise RuntimeError("BLAS sgemm failed")


@jit()
def _layer_views(flat, sizes):
    """The weights (``(out, in)``) and biases of every layer as views of ``flat``."""
    weights, biases = [], []
    offset = 0
    for layer in range(sizes.shape[0] - 1):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        weights.append(flat[offset : offset + n_out * n_in].reshape((n_out, n_in)))
        offset += n_out * n_in
        biases.append(flat[offset : offset + n_out])
        offset += n_out
    return weights, biases


@jit()
def _forward(weights, biases, X):
    """Every layer's output, ``X`` first (ReLU after each hidden layer, none after the last)."""
    outputs = [X]
    h = X
    last = len(weights) - 1
    for layer in range(last + 1):
        w, b = weights[layer], biases[layer]
        rows, n_in, n_out = h.shape[0], w.shape[1], w.shape[0]
        z = np.empty((rows, n_out), dtype=np.float32)
        for i in range(rows):
            for j in range(n_out):
                z[i, j] = b[j]
        # z = b + h W^T, as torch's addmm
        _product(_TRANS, _NOTRANS, n_out, rows, n_in, w, n_in, h, n_in, 1.0, z, n_out)
        if layer < last:  # ReLU; NaN stays NaN, as in torch
            for i in range(rows):
                for j in range(n_out):
                    if z[i, j] < 0.0:
                        z[i, j] = 0.0
        outputs.append(z)
        h = z
    return outputs


@jit()
def _head(pre, has_floor, floor):
    """The network's output from the last layer's column: ``softplus(pre) + floor`` or ``pre``."""
    n = pre.shape[0]
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        x = pre[i, 0]
        if has_floor:
            x = (x if x > _SOFTPLUS_THRESHOLD else np.log1p(np.exp(x))) + floor
        out[i] = x
    return out


@jit()
def _loss(kind, out, target, tau, beta, grad):
    """Mean loss (float64); fills ``grad`` with its gradient with respect to ``out`` unless
    ``grad`` is empty. ``target``: ``y`` (MSE), the residual (pinball), ``(y, radius)`` (soft
    coverage) in its columns."""
    n = out.shape[0]
    with_grad = grad.shape[0] == n
    inv_n = np.float32(1.0 / n)
    tau32, beta32 = np.float32(tau), np.float32(beta)
    total = 0.0
    for i in range(n):
        o = out[i]
        if kind == 0:  # MSE: mean (o - y)^2
            d = o - target[i, 0]
            total += d * d
            g = np.float32(2.0) * d * inv_n
        elif kind == 1:  # folded pinball: mean max(tau u, (tau - 1) u), u = r - h
            u = target[i, 0] - o
            left, right = tau32 * u, (tau32 - np.float32(1.0)) * u
            total += max(left, right)
            if left > right:
                g = -tau32 * inv_n
            elif left < right:
                g = -(tau32 - np.float32(1.0)) * inv_n
            else:  # a tie: each branch gets half the gradient (autograd's maximum rule)
                g = -(np.float32(2.0) * tau32 - np.float32(1.0)) * np.float32(0.5) * inv_n
        else:  # soft coverage: -mean sigmoid((r - |y - m|) / beta)
            diff = target[i, 0] - o
            s = np.float32(1.0) / (np.float32(1.0) + np.exp(-(target[i, 1] - abs(diff)) / beta32))
            total -= s
            sign = np.float32(1.0) if diff > 0 else (np.float32(-1.0) if diff < 0 else diff * 0)
            # d/dm of -s/n: -(s (1 - s) / beta / n) sgn(y - m)
            g = -(s * (np.float32(1.0) - s) / beta32 * inv_n) * sign
        if with_grad:
            grad[i] = g
    return total / n


@jit()
def _backward(weights, outputs, pre, delta, has_floor, grad_weights, grad_biases):
    """Gradients of every layer into ``grad_weights`` / ``grad_biases``; ``delta`` is the
    loss's gradient with respect to the network output."""
    n = delta.shape[0]
    d = np.empty((n, 1), dtype=np.float32)
    for i in range(n):
        g = delta[i]
        if has_floor:  # softplus backward: g * sigmoid(x) below the threshold
            x = pre[i, 0]
            if x <= _SOFTPLUS_THRESHOLD:
                z = np.exp(x)
                g = g * z / (z + np.float32(1.0))
        d[i, 0] = g
    for layer in range(len(weights) - 1, -1, -1):
        below = outputs[layer]
        n_out, n_in = d.shape[1], below.shape[1]
        # the weight gradient d^T below, straight into the flat gradient
        _product(_NOTRANS, _TRANS, n_in, n_out, n, below, n_in, d, n_out, 0.0,
                 grad_weights[layer], n_in)
        # the bias gradient: column sums, accumulated row by row (contiguous reads)
        width = d.shape[1]
        acc = np.zeros(width, dtype=np.float64)
        for i in range(n):
            for j in range(width):
                acc[j] += d[i, j]
        gb = grad_biases[layer]
        for j in range(width):
            gb[j] = acc[j]
        if layer > 0:
            d_below = np.empty((n, n_in), dtype=np.float32)
            _product(_NOTRANS, _NOTRANS, n_in, n, n_out, weights[layer], n_in, d, n_out, 0.0,
                     d_below, n_in)
            d = d_below
            # below is the ReLU's output: no gradient where it cut
            for i in range(n):
                for j in range(d.shape[1]):
                    if below[i, j] <= 0.0:
                        d[i, j] = 0.0


@jit()
def _loss_and_gradient(weights, biases, X, target, loss, grad_weights, grad_biases):
    """Forward, mean loss and backward on one minibatch: the loss (float64); the gradients
    go to ``grad_weights`` / ``grad_biases``."""
    kind, tau, beta, has_floor, floor = loss
    outputs = _forward(weights, biases, X)
    pre = outputs[-1]
    out = _head(pre, has_floor, np.float32(floor))
    delta = np.empty(X.shape[0], dtype=np.float32)
    value = _loss(kind, out, target, tau, beta, delta)
    _backward(weights, outputs, pre, delta, has_floor, grad_weights, grad_biases)
    return value


@jit()
def loss_gradient(theta, sizes, X, target, loss, grad):
    """The mean loss of the network ``theta`` on ``(X, target)``; its gradient goes to the flat
    vector ``grad`` (what a training step computes before clipping and AdamW)."""
    weights, biases = _layer_views(theta, sizes)
    grad_weights, grad_biases = _layer_views(grad, sizes)
    return _loss_and_gradient(weights, biases, X, target, loss, grad_weights, grad_biases)


@jit()
def _clip(grad, max_norm):
    """``clip_grad_norm_``: scale all gradients by ``max_norm / (norm + 1e-6)`` if below one."""
    acc = 0.0
    for k in range(grad.shape[0]):
        acc += float(grad[k]) * float(grad[k])
    coef = max_norm / (np.sqrt(acc) + 1e-6)
    if coef < 1.0:
        c = np.float32(coef)
        for k in range(grad.shape[0]):
            grad[k] *= c


@jit()
def _adamw(theta, grad, exp_avg, exp_avg_sq, step, lr, weight_decay, beta1, beta2, eps):
    """One decoupled-weight-decay Adam step (torch's ``AdamW``, amsgrad off)."""
    decay = np.float32(1.0 - lr * weight_decay)
    b2 = np.float32(beta2)
    one_minus_b1, one_minus_b2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)
    step_size = np.float32(lr / (1.0 - beta1**step))
    bias2_sqrt = np.float32(np.sqrt(1.0 - beta2**step))
    eps32 = np.float32(eps)
    for k in range(theta.shape[0]):
        g = grad[k]
        m = exp_avg[k] + one_minus_b1 * (g - exp_avg[k])
        v = b2 * exp_avg_sq[k] + one_minus_b2 * g * g
        exp_avg[k] = m
        exp_avg_sq[k] = v
        theta[k] = theta[k] * decay - step_size * m / (np.sqrt(v) / bias2_sqrt + eps32)


@jit()
def train_epoch(state, sizes, X, target, order, batch_size, loss, optim, losses):
    """One epoch over ``X[order]`` in minibatches of ``batch_size`` (the last one smaller).

    Parameters
    ----------
    state : (theta, grad, exp_avg, exp_avg_sq), float32 vectors
        Flat parameters (updated in place), gradient buffer and AdamW moments.
    sizes : int64 array
        Layer widths ``(n_features, hidden..., 1)``.
    X : float32 array (n, n_features)
    target : float32 array (n, 1) or (n, 2)
    order : int64 array
        Row order of the epoch.
    batch_size : int
    loss : (kind, tau, beta, has_floor, floor)
        :data:`LOSS_CODES` kind, its parameters, and the radius head (``has_floor``).
    optim : (step, lr, weight_decay, beta1, beta2, eps, max_norm)
        AdamW's step count before the epoch and its hyper-parameters; ``max_norm`` 0: no
        clipping.
    losses : float64 array
        Receives each minibatch's mean loss.

    Returns
    -------
    step : int
        AdamW's step count after the epoch.
    """
    theta, grad, exp_avg, exp_avg_sq = state
    step, lr, weight_decay, beta1, beta2, eps, max_norm = optim
    weights, biases = _layer_views(theta, sizes)
    grad_weights, grad_biases = _layer_views(grad, sizes)
    n, n_features, n_target = order.shape[0], X.shape[1], target.shape[1]
    batch = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = stop - start
        Xb = np.empty((rows, n_features), dtype=np.float32)
        Tb = np.empty((rows, n_target), dtype=np.float32)
        for i in range(rows):
            r = order[start + i]
            for j in range(n_features):
                Xb[i, j] = X[r, j]
            for j in range(n_target):
                Tb[i, j] = target[r, j]
        losses[batch] = _loss_and_gradient(
            weights, biases, Xb, Tb, loss, grad_weights, grad_biases
        )
        if max_norm > 0.0:
            _clip(grad, max_norm)
        step += 1
        _adamw(theta, grad, exp_avg, exp_avg_sq, step, lr, weight_decay, beta1, beta2, eps)
        batch += 1
    return step


@jit()
def evaluate_loss(theta, sizes, X, target, loss):
    """The mean loss of the network ``theta`` on ``(X, target)`` (no gradient)."""
    kind, tau, beta, has_floor, floor = loss
    weights, biases = _layer_views(theta, sizes)
    outputs = _forward(weights, biases, X)
    out = _head(outputs[-1], has_floor, np.float32(floor))
    return _loss(kind, out, target, tau, beta, np.empty(0, dtype=np.float32))
