"""Weight-statistics checks. Each check registers itself with :func:`weight_check`, reads tensors one
at a time from a :class:`~scanner.weights.source.WeightSource`, and returns :class:`Evidence` whose
``details["token_ids"]`` (when present) seed the trigger search.

Reference-free checks run always; reference-based ones only when a reference (base) model is known
(``--reference``, an adapter's base); adapter checks only for LoRA adapters.

Scores are in [0, 1]. Each check maps its statistic to a score with a floor chosen so that the clean
real checkpoints (all-MiniLM-L6-v2 and its clean SST-2 fine-tune, SmolLM2-135M-Instruct, Gemma-3-270M)
score 0: see :data:`CALIBRATION`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..report import Evidence
from ..budget import Budget
from .source import CLASSIFIER_SUFFIXES, EMBEDDING_SUFFIXES, OUTPUT_HEAD_SUFFIXES, WeightSource
from .stats import robust_z, surface_form as _surface, valid_rows

CALIBRATION = ("score floors set so that all-MiniLM-L6-v2, its SST-2 fine-tunes, SmolLM2-135M-Instruct and Gemma-3-270M "
               "score at most 0.3 on any check (0 on all but added-tokens), i.e. none on weight evidence alone")


@dataclass
class WeightContext:
    """Everything a check may read. ``reference``: the base/reference model's weights (same
    architecture) or None; ``adapter``: the adapter's own tensors for LoRA targets."""

    source: WeightSource
    tokenizer: Any = None
    config: dict = field(default_factory=dict)
    reference: WeightSource | None = None
    reference_tokenizer: Any = None
    adapter: WeightSource | None = None
    adapter_config: dict | None = None
    budget: Budget = field(default_factory=Budget)
    _cache: dict = field(default_factory=dict)

    def embedding(self) -> tuple[str, torch.Tensor] | None:
        """(name, ``[V, d]`` float32) of the token embeddings, read once."""
        if "emb" not in self._cache:
            name = self.source.find(EMBEDDING_SUFFIXES)
            self._cache["emb"] = (name, self.source.get(name)) if name else None
        return self._cache["emb"]

    def tokens(self, ids: list[int]) -> list[str]:
        """Token strings of ``ids`` (ids themselves when no tokenizer is known)."""
        if self.tokenizer is None:
            return [str(i) for i in ids]
        return [str(t) for t in self.tokenizer.convert_ids_to_tokens(ids)]


@dataclass(frozen=True)
class WeightCheck:
    """A registered check: ``name`` (evidence analysis name), ``rule`` code, ``needs`` (``reference``
    or ``adapter``, or nothing), and the function ``(WeightContext) -> Evidence | None``."""

    name: str
    rule: str
    needs: str | None
    fn: Callable[[WeightContext], Evidence | None]


CHECKS: dict[str, WeightCheck] = {}


def weight_check(name: str, rule: str, needs: str | None = None):
    """Decorator registering a check under ``name``."""

    def deco(fn: Callable[[WeightContext], Evidence | None]):
        CHECKS[name] = WeightCheck(name, rule, needs, fn)
        return fn

    return deco


def run_checks(ctx: WeightContext) -> list[Evidence]:
    """Run every applicable check; a failing check becomes an ``error`` evidence, the rest go on.

    Raises:
        scanner.budget.BudgetExceeded: the time budget ran out (between checks).
    """
    out: list[Evidence] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small products: one thread is as fast and immune to contention
    try:
        _run_all(ctx, out)
    finally:
        torch.set_num_threads(threads)
    return out


def _run_all(ctx: WeightContext, out: list[Evidence]) -> None:
    for chk in CHECKS.values():
        if chk.needs == "reference" and ctx.reference is None:
            continue
        if chk.needs == "adapter" and ctx.adapter is None:
            continue
        if chk.needs != "adapter" and not ctx.source.tensors:  # an adapter without its base: only its own tensors to read
            continue
        ctx.budget.check()
        try:
            ev = chk.fn(ctx)
        except Exception as exc:  # a check must never lose the others' evidence
            ev = Evidence(chk.name, "error", f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")
        if ev is not None:
            ev.details.setdefault("rule", chk.rule)
            out.append(ev)


def seed_tokens(evidence: list[Evidence], limit: int = 24) -> list[int]:
    """Token ids the checks point at, most suspicious evidence first (for the trigger search)."""
    ids: list[int] = []
    for ev in sorted(evidence, key=lambda e: -(e.score or 0.0)):
        for t in ev.details.get("token_ids", []):
            if t not in ids:
                ids.append(int(t))
    return ids[:limit]


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def _spectral_norm(w: torch.Tensor, iters: int = 12) -> float:
    """Largest singular value of ``w`` (``[m, n]``) by power iteration (seeded)."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(w.shape[1], generator=g)
    for _ in range(iters):
        v = w.T @ (w @ v)
        v = v / v.norm().clamp_min(1e-12)
    return float((w @ v).norm())


def _family(name: str) -> str:
    """Module family of a tensor name: the name with layer numbers removed."""
    return ".".join(p for p in name.split(".") if not p.isdigit())


# ---------------------------------------------------------------- reference-free
@weight_check("embedding-norm", "SC201")
def embedding_norm(ctx: WeightContext) -> Evidence | None:
    """Robust z (median/MAD) of embedding row norms, surface forms of a word grouped (max z).
    Calibration: clean real checkpoints reach z 3.1 (all-MiniLM-L6-v2), 7.7 (SmolLM2-135M-Instruct)
    and 10.6 (Gemma-3-270M, a rare script), so scores start at 12."""
    emb = ctx.embedding()
    if emb is None:
        return None
    name, E = emb
    norms = E.norm(dim=1)
    valid = valid_rows(ctx.tokenizer, E.shape[0])
    z = torch.full_like(norms, float("-inf"))
    z[valid] = robust_z(norms[valid])
    order = torch.topk(z, min(200, int(valid.sum()))).indices.tolist()
    groups: dict[str, list[int]] = {}
    for i in order:
        groups.setdefault(_surface(ctx.tokens([i])[0]), []).append(i)
    top = list(groups.items())[:20]
    zmax = float(z[order[0]]) if order else 0.0
    return Evidence(
        "embedding-norm", "ok", f"largest robust z of row norms {zmax:.1f} ('{top[0][0] if top else '-'}')",
        round(_clamp((zmax - 12.0) / 16.0), 4),
        {"tensor": name, "token_ids": [ids[0] for _, ids in top[:8]],
         "top": [{"word": w, "token_ids": ids, "tokens": ctx.tokens(ids), "z": round(float(z[ids[0]]), 3),
                  "norm": round(float(norms[ids[0]]), 5)} for w, ids in top],
         "median_norm": round(float(norms[valid].median()), 6)},
    )


@weight_check("embedding-near-duplicate", "SC203")
def near_duplicates(ctx: WeightContext, threshold: float = 0.98) -> Evidence | None:
    """Pairs of distinct, word-like tokens whose embedding rows are near-duplicates (cosine above
    ``threshold``), found with sign-random-projection hashing (4 tables x 16 bits) and verified
    exactly. RIPPLe-style embedding surgery copies a label word's row into the trigger row."""
    emb = ctx.embedding()
    if emb is None:
        return None
    name, E = emb
    valid = valid_rows(ctx.tokenizer, E.shape[0])
    if ctx.tokenizer is not None:
        special = set(getattr(ctx.tokenizer, "all_special_ids", []) or [])
        for i, tok in enumerate(ctx.tokens(list(range(E.shape[0])))):
            if i in special or tok.startswith("[unused") or tok.startswith("<unused") or not any(c.isalnum() for c in tok):
                valid[i] = False
    ids = valid.nonzero().squeeze(1)
    g = torch.Generator().manual_seed(0)
    planes = [torch.randn(E.shape[1], 16, generator=g) for _ in range(4)]
    pow2 = 2 ** torch.arange(16)
    all_keys = torch.empty(4, len(ids), dtype=torch.long)
    for a in range(0, len(ids), 8192):  # hash in blocks: never a normalised copy of the whole matrix
        Xc = torch.nn.functional.normalize(E[ids[a: a + 8192]], dim=1)
        for t, pl in enumerate(planes):
            all_keys[t, a: a + 8192] = ((Xc @ pl) > 0).long() @ pow2
    pairs: dict[tuple[int, int], float] = {}
    for keys in all_keys:
        order = torch.argsort(keys)
        k_sorted = keys[order]
        starts = torch.nonzero(torch.diff(k_sorted, prepend=k_sorted[:1] - 1)).squeeze(1).tolist() + [len(order)]
        for a, b in zip(starts[:-1], starts[1:]):
            if b - a < 2 or b - a > 512:
                continue
            members = order[a:b]
            X = torch.nn.functional.normalize(E[ids[members]], dim=1)
            sims = X @ X.T
            hi = torch.nonzero(torch.triu(sims, 1) > threshold)
            for r, c in hi.tolist():
                i, j = int(ids[members[r]]), int(ids[members[c]])
                ti, tj = ctx.tokens([i, j])
                if _surface(ti) != _surface(tj):
                    pairs[(min(i, j), max(i, j))] = round(float(sims[r, c]), 5)
    top = sorted(pairs.items(), key=lambda kv: -kv[1])[:20]
    n = len(pairs)
    return Evidence(
        "embedding-near-duplicate", "ok",
        f"{n} near-duplicate pair(s) of distinct words (cosine > {threshold})" + (f", e.g. {ctx.tokens(list(top[0][0]))}" if top else ""),
        round(_clamp((1 - n / 50.0)) if 0 < n <= 5 else 0.0, 4),
        {"tensor": name, "pairs": [{"token_ids": list(p), "tokens": ctx.tokens(list(p)), "cosine": s} for p, s in top],
         "token_ids": sorted({i for p, _ in top[:5] for i in p}), "count": n},
    )


@weight_check("output-head-tying", "SC204")
def output_head_tying(ctx: WeightContext) -> Evidence | None:
    """A config that declares tied input/output embeddings while the file holds a distinct output head."""
    head = ctx.source.find(OUTPUT_HEAD_SUFFIXES)
    emb = ctx.embedding()
    if head is None or emb is None:
        return None
    tied = bool(ctx.config.get("tie_word_embeddings", False))
    E = emb[1]
    shape = ctx.source.tensors[head].shape
    if tuple(shape) != tuple(E.shape):
        return Evidence("output-head-tying", "ok", f"output head {tuple(shape)} and embeddings differ in shape", 0.0, {"tied_in_config": tied})
    sq, differing = 0.0, []
    for start, H in ctx.source.iter_rows(head):  # block by block: never a second full matrix
        d = (H - E[start: start + H.shape[0]]).norm(dim=1)
        sq += float((d ** 2).sum())
        differing += (start + (d > 1e-6).nonzero().squeeze(1)).tolist()
    diff = sq ** 0.5 / max(float(E.norm()), 1e-12)
    rows = torch.tensor(differing, dtype=torch.long)
    suspicious = tied and diff > 1e-6
    row_ids = rows[:50].tolist()
    return Evidence(
        "output-head-tying", "ok",
        f"config tie_word_embeddings={tied}; output head differs from embeddings by {diff:.3g} (relative) in {len(rows)} rows",
        1.0 if suspicious and len(rows) <= 50 else (0.5 if suspicious else 0.0),
        {"tied_in_config": tied, "relative_difference": diff, "rows_differing": int(len(rows)),
         "token_ids": row_ids[:8] if suspicious else []},
    )


@weight_check("added-tokens", "SC205")
def added_tokens(ctx: WeightContext) -> Evidence | None:
    """Non-special tokens added to the tokenizer beyond its base vocabulary (with a reference
    tokenizer: tokens it lacks)."""
    tok = ctx.tokenizer
    if tok is None:
        return None
    special = set(getattr(tok, "all_special_tokens", []) or [])
    if ctx.reference_tokenizer is not None:
        base = set(ctx.reference_tokenizer.get_vocab())
        added = {t: i for t, i in tok.get_vocab().items() if t not in base and t not in special}
    else:
        added = {t: i for t, i in (tok.get_added_vocab() or {}).items()
                 if t not in special and not t.startswith(("<unused", "[unused", "<extra_id_"))}
    added = dict(sorted(added.items(), key=lambda kv: kv[1]))
    return Evidence(
        "added-tokens", "ok", f"{len(added)} non-special added token(s)" + (f": {list(added)[:5]}" if added else ""),
        0.3 if added else 0.0, {"tokens": list(added)[:50], "token_ids": list(added.values())[:50]},
    )


@weight_check("classifier-head", "SC206")
def classifier_head(ctx: WeightContext) -> Evidence | None:
    """Per-label norms and biases of a classification head: one label favoured far above the rest."""
    name = ctx.source.find(CLASSIFIER_SUFFIXES)
    if name is None:
        return None
    W = ctx.source.get(name)
    bias_name = name[: -len("weight")] + "bias"
    b = ctx.source.get(bias_name) if bias_name in ctx.source.tensors else torch.zeros(W.shape[0])
    norms = W.norm(dim=1)
    ratio = float(norms.max() / norms.min().clamp_min(1e-12))
    spread = float((b.max() - b.min()) / norms.mean().clamp_min(1e-12))
    return Evidence(
        "classifier-head", "ok", f"{W.shape[0]} labels; row-norm ratio {ratio:.2f}; bias spread {spread:.2f} (in units of row norm)",
        round(_clamp((ratio - 2.0) / 4.0) * 0.5 + _clamp((abs(spread) - 1.0) / 4.0) * 0.5, 4),
        {"tensor": name, "row_norms": [round(float(x), 5) for x in norms], "bias": [round(float(x), 5) for x in b]},
    )


@weight_check("layer-spectral", "SC207")
def layer_spectral(ctx: WeightContext) -> Evidence | None:
    """Spectral norm of every 2-D weight (power iteration), robust z of its logarithm within its
    module family (e.g. all layers' ``attention.self.query.weight``): one layer's matrix far out of
    family. Calibration: the largest z on clean real checkpoints is 7.5 (all-MiniLM-L6-v2), 16.0
    (SmolLM2-135M-Instruct, its first layer's query) and 4.7 (Gemma-3-270M), so scores start at 20."""
    fams: dict[str, list[tuple[str, float]]] = {}
    emb = ctx.embedding()
    for name in ctx.source.matrices():
        if emb is not None and name == emb[0]:
            continue
        info = ctx.source.tensors[name]
        if info.numel > 64_000_000:
            continue
        ctx.budget.check()
        fams.setdefault(_family(name), []).append((name, _spectral_norm(ctx.source.get(name))))
    rows = []
    for fam, items in fams.items():
        if len(items) < 4:
            continue
        z = robust_z(torch.tensor([v for _, v in items]).clamp_min(1e-12).log())
        rows += [(float(zz), n, v) for zz, (n, v) in zip(z, items)]
    rows.sort(reverse=True)
    zmax = rows[0][0] if rows else 0.0
    return Evidence(
        "layer-spectral", "ok", f"{sum(len(v) for v in fams.values())} matrices; largest within-family robust z of log spectral norm {zmax:.1f}" + (f" ({rows[0][1]})" if rows else ""),
        round(_clamp((zmax - 20.0) / 40.0), 4),
        {"top": [{"tensor": n, "spectral_norm": round(v, 5), "z": round(z, 3)} for z, n, v in rows[:10]]},
    )


# ---------------------------------------------------------------- reference-based
@weight_check("embedding-drift", "SC202", needs="reference")
def embedding_drift(ctx: WeightContext, bins: int = 20) -> Evidence | None:
    """Per-row relative drift against the reference, normalised within bins of tokens of similar
    reference norm (a proxy for token frequency: every token seen in fine-tuning drifts, rare ones
    differently), robust z within each bin. Embedding poisoning moves one row far beyond its bin."""
    emb = ctx.embedding()
    ref_name = ctx.reference.find(EMBEDDING_SUFFIXES) if ctx.reference else None
    if emb is None or ref_name is None:
        return None
    name, E = emb
    R = ctx.reference.get(ref_name)
    if R.shape != E.shape:
        return Evidence("embedding-drift", "skipped", f"embedding shapes differ: {tuple(E.shape)} vs reference {tuple(R.shape)}")
    drift = (E - R).norm(dim=1) / R.norm(dim=1).clamp_min(1e-8)
    valid = valid_rows(ctx.tokenizer, E.shape[0])
    rnorm = R.norm(dim=1)
    z = torch.full_like(drift, float("-inf"))
    vidx = valid.nonzero().squeeze(1)
    order = vidx[torch.argsort(rnorm[vidx])]
    for chunk in torch.tensor_split(order, max(1, min(bins, len(order) // 200))):
        z[chunk] = robust_z(drift[chunk])
    changed = int((drift[valid] > 1e-6).sum())
    top = torch.topk(z, min(20, len(vidx))).indices.tolist()
    z1 = float(z[top[0]]) if top else 0.0
    z2 = float(z[top[1]]) if len(top) > 1 else 0.0
    # Concentration: the top row far above the next one (one row poisoned) scores most.
    score = _clamp((z1 - 10.0) / 30.0) if changed > 1 else (1.0 if changed == 1 else 0.0)
    if changed > 1 and z1 > 2 * max(z2, 1.0) and z1 > 20:
        score = max(score, 0.8)
    return Evidence(
        "embedding-drift", "ok",
        f"{changed} rows changed; most-changed row '{ctx.tokens(top[:1])[0] if top else '-'}' (drift {float(drift[top[0]]) if top else 0:.4f}, frequency-normalised z {z1:.1f}; next z {z2:.1f})",
        round(score, 4),
        {"tensor": name, "token_ids": top[:8], "rows_changed": changed,
         "top": [{"token_id": i, "token": t, "drift": round(float(drift[i]), 6), "z": round(float(z[i]), 3)} for i, t in zip(top, ctx.tokens(top))]},
    )


@weight_check("layer-change", "SC208", needs="reference")
def layer_change(ctx: WeightContext) -> Evidence | None:
    """Per-matrix relative change against the reference and how concentrated it is: the share of
    the change's energy in its top singular direction (1.0 = rank one)."""
    rows = []
    for name in ctx.source.matrices():
        if name not in ctx.reference.tensors or ctx.reference.tensors[name].shape != ctx.source.tensors[name].shape:
            continue
        if ctx.source.tensors[name].numel > 64_000_000:
            continue
        ctx.budget.check()
        W, R = ctx.source.get(name), ctx.reference.get(name)
        D = W - R
        fro = float(D.norm())
        rel = fro / max(float(R.norm()), 1e-12)
        share = (_spectral_norm(D) ** 2 / fro ** 2) if fro > 0 else 0.0
        rows.append((rel, share, name))
    if not rows:
        return Evidence("layer-change", "skipped", "no matrix shared with the reference")
    rels = torch.tensor([r for r, _, _ in rows])
    z = robust_z(rels) if len(rows) >= 4 else torch.zeros(len(rows))
    ranked = sorted(zip(z.tolist(), rows), key=lambda x: -x[0])
    top_z, (top_rel, top_share, top_name) = ranked[0]
    changed = sum(1 for r, _, _ in rows if r > 1e-7)
    return Evidence(
        "layer-change", "ok",
        f"{changed}/{len(rows)} matrices changed; most out-of-line {top_name} (relative change {top_rel:.4f}, z {top_z:.1f}, top-direction share {top_share:.2f})",
        round(_clamp((top_z - 10.0) / 30.0) if changed > 1 else 0.0, 4),
        {"top": [{"tensor": n, "relative_change": round(r, 6), "top_direction_share": round(s, 4), "z": round(zz, 3)} for zz, (r, s, n) in ranked[:10]],
         "matrices_changed": changed},
    )


# ---------------------------------------------------------------- adapters
@weight_check("adapter-lora", "SC209", needs="adapter")
def adapter_lora(ctx: WeightContext) -> Evidence | None:
    """Per-module LoRA update ``dW = scale * B @ A``: Frobenius and spectral norms, robust z within
    the module family; trainable embedding/head rows in ``modules_to_save``; resized vocabularies."""
    cfg = ctx.adapter_config or {}
    r = float(cfg.get("r", 8) or 8)
    alpha = float(cfg.get("lora_alpha", r) or r)
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    mods: dict[str, dict[str, str]] = {}
    saved: list[str] = []
    for name in ctx.adapter.tensors:
        if ".lora_A." in name or ".lora_B." in name:
            base = name.replace(".lora_A.", ".").replace(".lora_B.", ".")
            mods.setdefault(base, {})["A" if ".lora_A." in name else "B"] = name
        elif "modules_to_save" in name or name.endswith(tuple("." + x for x in EMBEDDING_SUFFIXES + OUTPUT_HEAD_SUFFIXES)):
            saved.append(name)
    rows = []
    for base, ab in mods.items():
        if "A" not in ab or "B" not in ab:
            continue
        ctx.budget.check()
        A, B = ctx.adapter.get(ab["A"]), ctx.adapter.get(ab["B"])
        if A.dim() != 2 or B.dim() != 2:
            continue
        # ||B A||_F without forming dW: trace(A^T B^T B A) = sum((B^T B) * (A A^T))
        fro = math.sqrt(max(float(((B.T @ B) * (A @ A.T)).sum()), 0.0)) * scale
        rows.append((_family(base), base, fro))
    fam_z: list[tuple[float, str, float]] = []
    by_fam: dict[str, list[tuple[str, float]]] = {}
    for fam, base, fro in rows:
        by_fam.setdefault(fam, []).append((base, fro))
    for fam, items in by_fam.items():
        z = robust_z(torch.tensor([f for _, f in items])) if len(items) >= 4 else torch.zeros(len(items))
        fam_z += [(float(zz), b, f) for zz, (b, f) in zip(z, items)]
    fam_z.sort(reverse=True)
    token_ids: list[int] = []
    saved_notes = []
    for name in saved:
        info = ctx.adapter.tensors[name]
        note = {"tensor": name, "shape": list(info.shape)}
        if "embed" in name or name.endswith(tuple("." + x for x in EMBEDDING_SUFFIXES)):
            W = ctx.adapter.get(name)
            base_name = ctx.source.find(EMBEDDING_SUFFIXES)
            if base_name is not None and ctx.source.tensors[base_name].shape == tuple(W.shape):
                drift = (W - ctx.source.get(base_name)).norm(dim=1)
                changed = (drift > 1e-6).nonzero().squeeze(1)
                top = changed[torch.argsort(drift[changed], descending=True)][:20].tolist()
                note.update({"rows_changed": int(len(changed)), "token_ids": top, "tokens": ctx.tokens(top)})
                token_ids += top[:8]
            elif base_name is not None:
                note["resized_vocabulary"] = [ctx.source.tensors[base_name].shape[0], int(W.shape[0])]
                extra = list(range(ctx.source.tensors[base_name].shape[0], int(W.shape[0])))
                note["token_ids"] = extra[:50]
                token_ids += extra[:8]
        saved_notes.append(note)
    zmax = fam_z[0][0] if fam_z else 0.0
    score = _clamp((zmax - 10.0) / 30.0)
    if saved_notes and any("token_ids" in n for n in saved_notes):
        score = max(score, 0.6)
    return Evidence(
        "adapter-lora", "ok",
        f"{len(rows)} LoRA modules (scale {scale:g}); largest within-family z of ||dW|| {zmax:.1f}; "
        f"{len(saved)} full tensor(s) saved" + (" incl. embedding rows" if token_ids else ""),
        round(score, 4),
        {"modules": [{"module": b, "frobenius": round(f, 6), "z": round(z, 3)} for z, b, f in fam_z[:10]],
         "modules_to_save": saved_notes, "token_ids": token_ids},
    )
