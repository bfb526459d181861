"""Building blocks shared by the KD methods: the stable relaxed ranking loss, rank-based sampling,
Gumbel selection with an annealed temperature, cosine similarities, and teacher checks.

Everything here is vectorised over users/items (no per-entity Python loops) and numerically stable
(METHODS.md §10): log-sum-exp forms with max subtraction, no divisions by unguarded norms.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.errors import ConfigError

#: Stand-in for −∞ in masked log-sum-exps: finite, so masked entries get exactly zero gradient and
#: never produce NaN (exp(−1e30 − x) underflows to 0 in float32).
NEG_INF = -1e30

#: What a teacher object may provide (duck-typed; see ``training.distill.teacher``).
TEACHER_NEEDS = {
    "embeddings": "embeddings() -> (user [U, d_t], item [I, d_t]) float32",
    "user_topn": "user_topn(n) -> int64 [U, n] (best first, training items excluded, -1 padding)",
    "item_topn": "item_topn(n) -> int64 [I, n] (best users first, training pairs excluded, -1 padding)",
    "scores": "score_candidates(users [b], items [b, c]) -> float32 [b, c] (teacher scores)",
}
_NEED_ATTR = {"embeddings": "embeddings", "user_topn": "user_topn", "item_topn": "item_topn", "scores": "score_candidates"}


def require_teacher(method: str, teacher: object | None, needs: frozenset[str] | set[str]) -> None:
    """Raises a clear :class:`ConfigError` when the teacher cannot provide what ``method`` needs."""
    if not needs:
        return
    if teacher is None:
        raise ConfigError(f"KD method '{method}' needs a teacher ({', '.join(sorted(needs))}); pass --teacher RUN_FOLDER.")
    missing = [n for n in sorted(needs) if not callable(getattr(teacher, _NEED_ATTR[n], None))]
    if missing:
        details = "; ".join(TEACHER_NEEDS[n] for n in missing)
        raise ConfigError(f"KD method '{method}' needs {', '.join(missing)} from the teacher, which {type(teacher).__name__} does not provide ({details}).")


# ------------------------------------------------------------------------------------ losses
class _RelaxedRanking(torch.autograd.Function):
    """Σ_rows −Σ_k m_k [r_k − log S_k],  S_k = Σ_{i ≥ k} e^{r_i} + e^{ρ},  with the closed-form gradient

        ∂/∂r_i = −m_i + e^{r_i} Σ_{k ≤ i} m_k / S_k,        ∂/∂ρ = e^{ρ} Σ_k m_k / S_k.

    ``ranked`` r [b, K] (masked entries already at NEG_INF, valid entries a prefix), ``mask`` m
    [b, K] float, ``rest_lse`` ρ [b, 1] = log Σ_{j ∈ L} e^{r_j} (NEG_INF when L is empty).

    Each row is shifted by max(r, ρ) and the sums are taken in float64, so every exponential is ≤ 1
    and nothing overflows; a suffix sum that underflows (its terms all e^{−700} below the row
    maximum) falls back to its lower bound e^{r_k}, and the gradient terms, each ≤ 1 in exact
    arithmetic, are clipped to their bounds, so no −∞, ∞ or NaN can appear (METHODS.md §10, 1).
    One fused forward/backward instead of autograd through ~30 elementwise operations: cheaper on
    CPU, where RRD, IR and HetComp evaluate it on every batch.
    """

    @staticmethod
    def forward(ctx, ranked, mask, rest_lse):
        r, rho = ranked.double(), rest_lse.double()
        shift = torch.maximum(r.amax(dim=-1, keepdim=True), rho)
        z = r - shift
        e, e_rest = torch.exp(z), torch.exp(rho - shift)
        s = e.flip(-1).cumsum(-1).flip(-1) + e_rest
        tiny = torch.finfo(torch.float64).tiny
        log_s = torch.maximum(torch.where(s > tiny, torch.log(s.clamp_min(tiny)), z), z)
        m = mask.double()
        ctx.save_for_backward(e, e_rest, s, m)
        return (m * (log_s - z)).sum().to(ranked.dtype)

    @staticmethod
    def backward(ctx, g):
        e, e_rest, s, m = ctx.saved_tensors
        bound = m.new_tensor(float(m.shape[-1]))
        inv = m / s.clamp_min(torch.finfo(torch.float64).tiny)
        g64 = g.double()
        d_ranked = (torch.minimum(e * inv.cumsum(-1).clamp_max(1e300), bound) - m) * g64
        d_rest = None
        if ctx.needs_input_grad[2]:
            d_rest = (torch.minimum(e_rest * inv.sum(-1, keepdim=True).clamp_max(1e300), bound) * g64).to(g.dtype)
        return d_ranked.to(g.dtype), None, d_rest


def relaxed_ranking_loss(
    ranked: torch.Tensor,
    rest: torch.Tensor,
    ranked_mask: torch.Tensor | None = None,
    rest_mask: torch.Tensor | None = None,
    rest_logsumexp: torch.Tensor | None = None,
) -> torch.Tensor:
    """Relaxed listwise (Plackett–Luce) loss of RRD / IR, summed over rows (Kang et al., CIKM 2020).

    For each row with ordered scores r_1..r_K (``ranked``, best first) and unordered scores
    ``rest`` (the uninteresting set L):

        L = − Σ_k [ r_k − log( Σ_{i ≥ k} e^{r_i} + Σ_{j ∈ L} e^{r_j} ) ]

    evaluated by :class:`_RelaxedRanking` with each row shifted by its maximum (no raw score is ever
    exponentiated, so it cannot overflow; METHODS.md §10, 1) and a closed-form backward.

    Args:
        ranked: float [b, K], in the teacher's order.
        rest: float [b, L] (L may be 0: the "interesting-only" ablation).
        ranked_mask, rest_mask: optional bool masks of valid entries (False entries are ignored;
            a row's valid ranked entries must be a prefix when lists are shorter than K).
        rest_logsumexp: optional float [b], log Σ_{j ∈ L} e^{r_j} already computed (HetComp's
            complement sets); then ``rest`` must be empty.
    Returns:
        scalar: the sum over rows and positions.
    """
    if ranked_mask is not None:
        ranked = torch.where(ranked_mask, ranked, torch.full_like(ranked, NEG_INF))
        mask = ranked_mask.to(ranked.dtype)
    else:
        mask = torch.ones_like(ranked)
    if rest_logsumexp is not None:
        rest_lse = rest_logsumexp.unsqueeze(-1).to(ranked.dtype)
    elif rest.shape[-1] > 0:
        if rest_mask is not None:
            rest = torch.where(rest_mask, rest, torch.full_like(rest, NEG_INF))
        rest_lse = torch.logsumexp(rest, dim=-1, keepdim=True)
    else:
        rest_lse = torch.full_like(ranked[..., :1], NEG_INF)
    return _RelaxedRanking.apply(ranked, mask, rest_lse)


def cosine_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """cos(x_j, y_k) → [n, m] for x [n, d], y [m, d]; zero vectors give 0, never NaN (METHODS.md §10, 4)."""
    return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).transpose(-1, -2)


# ----------------------------------------------------------------------------- temperature
def annealed_temperature(epoch: int, start: float, end: float, horizon: int) -> float:
    """τ(e) = start · (end / start)^{e / horizon}, clipped below at ``end`` (DE, HTD; METHODS.md §1)."""
    tau = start * (end / start) ** (epoch / max(1, horizon))
    return max(tau, end)


def gumbel_softmax_selection(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """s = softmax((log(α + 1e-10) + g) / τ), α = softmax(logits), g ~ Gumbel(0, 1) fresh per call.

    ``logits`` [n, M] are the selection network's pre-softmax outputs. Returns s [n, M]. With a
    tiny τ the result is exactly one-hot and the gradient to the selection network vanishes, as in
    the official code (METHODS.md §10, 3).
    """
    alpha = torch.softmax(logits, dim=-1)
    u = torch.rand_like(alpha).clamp_(1e-20, 1.0)
    g = -torch.log(-torch.log(u))
    return torch.softmax((torch.log(alpha + 1e-10) + g) / tau, dim=-1)


# ---------------------------------------------------------------------------------- sampling
def rank_sample_positions(
    rng: np.random.Generator,
    lengths: np.ndarray,
    k: int,
    temperature: float,
    n_positions: int,
    deterministic: bool = False,
    log_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, ``k`` positions of a ranked list drawn without replacement with P(r) ∝ exp(−r/T).

    Positions are 0-based (rank r = position + 1) and returned **sorted**, so the drawn items keep
    the list's order. Sampling without replacement uses the Gumbel-top-k trick, which is exactly
    successive multinomial draws without replacement (``torch.multinomial(replacement=False)``).
    ``deterministic`` returns the first k positions (the top-K variant the authors later recommend).

    Args:
        lengths: int [rows], the number of valid entries of each row's list (≤ n_positions).
        n_positions: the list width N.
        log_weights: optional float [N] log-probabilities (up to a constant) replacing −r/T.
    Returns:
        (positions int64 [rows, k], valid bool [rows, k]); invalid where a row has fewer than k entries.
    """
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), n_positions)
    rows = len(lengths)
    k_eff = min(k, n_positions)
    cols = np.arange(n_positions)
    if deterministic:
        pos = np.broadcast_to(np.arange(k_eff), (rows, k_eff)).copy()
    else:
        base = -(cols + 1) / temperature if log_weights is None else np.asarray(log_weights, dtype=np.float64)
        keys = base + rng.gumbel(size=(rows, n_positions))
        keys[cols[None, :] >= lengths[:, None]] = -np.inf
        if k_eff < n_positions:
            pos = np.argpartition(-keys, k_eff - 1, axis=1)[:, :k_eff]
        else:
            pos = np.tile(cols, (rows, 1))
    # invalid positions (rows with fewer than k entries) go last, valid ones sorted ascending
    pos = np.where(pos < lengths[:, None], pos, n_positions)
    pos.sort(axis=1)
    valid = pos < n_positions
    pos = np.where(valid, pos, 0)
    if k_eff < k:
        pos = np.concatenate([pos, np.zeros((rows, k - k_eff), dtype=pos.dtype)], axis=1)
        valid = np.concatenate([valid, np.zeros((rows, k - k_eff), dtype=bool)], axis=1)
    return pos.astype(np.int64), valid


def keys_of(rows: np.ndarray, cols: np.ndarray, n_cols: int) -> np.ndarray:
    """Sorted unique int64 keys row·n_cols + col (the format of ``training.sampling.excluded_keys``)."""
    return np.unique(np.asarray(rows, dtype=np.int64) * n_cols + np.asarray(cols, dtype=np.int64))


def list_lengths(lists: np.ndarray) -> np.ndarray:
    """Number of valid (≥ 0) entries per row of a -1-padded list (valid entries form a prefix)."""
    return (np.asarray(lists) >= 0).sum(axis=1).astype(np.int64)
