"""Image-captioning metrics as defined by the coco-caption toolkit, in pure Python (no Java).

BLEU-1…4 (Papineni et al., ACL 2002), ROUGE-L (Lin, ACL Workshop "Text Summarization
Branches Out", 2004) and CIDEr-D (Vedantam et al., CVPR 2015, arXiv:1411.5726), each with
the exact definition of the coco-caption evaluation code (Chen et al. 2015,
arXiv:1504.00325), the numbers captioning papers report. Every caption is first tokenised
with :func:`caption_tokenize`; the images of a corpus are the entries of ``candidates``
(one generated caption each) and ``references`` (a non-empty list of human captions each).

BLEU (:func:`corpus_bleu`, coco-caption ``BleuScorer`` with option ``"closest"``):
    matched n-grams are clipped: an n-gram counts at most as often as it occurs in the one
    reference where it occurs most. With ``correct_k`` the clipped matches and ``guess_k``
    the candidate n-grams of order k summed over the corpus, ``c`` the summed candidate
    lengths and ``r`` the summed reference lengths, where each image contributes the length
    of its reference closest to its candidate's length (a tie goes to the shorter one),
    ``BLEU-n = BP · (Π_{k≤n} (correct_k + 1e-15) / (guess_k + 1e-9))^(1/n)`` and
    ``BP = exp(1 − (r + 1e-9) / (c + 1e-15))`` when ``(c + 1e-15) / (r + 1e-9) < 1``, else 1.
    In ``[0, 1]``; a corpus with no matched n-gram of some order gets a tiny positive BLEU
    (the 1e-15), not 0. BLEU of a corpus is not the mean of the sentence BLEUs.

ROUGE-L (:func:`rouge_l`, coco-caption ``Rouge``):
    per image, with ``LCS_j`` the longest common subsequence of the candidate and reference
    ``j``, ``P = max_j LCS_j / len(candidate)`` and ``R = max_j LCS_j / len(reference_j)``
    (the two maxima may come from different references),
    ``score = (1 + β²) P R / (R + β² P)`` with β = 1.2, or 0 when P or R is 0; the corpus
    score is the mean over images, in ``[0, 1]``.

CIDEr-D (:func:`cider_d`, coco-caption ``CiderD``, ``df_mode="corpus"``):
    n-grams of orders 1…4. ``df(g)`` is the number of images whose references contain ``g``,
    counted over the corpus being scored, and ``N`` the number of images. A caption becomes
    one vector per order with entries ``count(g) · (log N − log max(1, df(g)))``. Per order,
    the similarity of the candidate vector ``c`` with a reference vector ``v`` is
    ``Σ_g min(c_g, v_g) · v_g / (‖c‖ ‖v‖)`` (0 when a norm is 0), times the length penalty
    ``exp(−(len_c − len_v)² / (2σ²))`` with σ = 6. The image score is 10 × the mean over the
    orders and the image's references; the corpus score is the mean over images, in
    ``[0, 10]``. coco-caption measures a caption's length as its number of bigrams, which
    is its number of words minus 1; as only the difference of lengths enters, this equals
    the word count used here, except for an empty caption, whose similarity is 0 anyway.
    Consequences of the corpus idf: a corpus of one image scores 0 (``log N = 0``), an
    n-gram in the references of every image weighs 0, and the score of an image depends on
    the rest of the corpus (score the whole test set at once).

Tokenisation (:func:`caption_tokenize`) approximates coco-caption's Stanford PTBTokenizer
followed by its punctuation filter: lower-case; split off punctuation and the clitics
``n't 's 're 've 'll 'd 'm`` ("don't" -> ``do n't``, "man's" -> ``man 's``); keep hyphenated
words ("t-shirt") and numbers ("1,000", "2.5") whole; drop the tokens coco-caption removes
(``' " ` ( ) { } . ? ! , : ; -`` and runs of them such as ``...``, ``--``, ``''``).
Other symbols stay single tokens (PTB would spell brackets ``-lsb-``; a consistent renaming
changes no score). PTB's rare rewrites ("cannot" -> ``can not``, "gonna" -> ``gon na``)
are not reproduced. Captions given as lists of tokens are only lower-cased. The caption
decoders' word vocabulary (:class:`vlkit.text.WordCaptionTokenizer`) is made of these tokens
(punctuation kept), and its ``decode`` joins them so that this function gives them back: a
generated caption that reads like its reference, hyphens and punctuation included, gets the
reference's tokens.

How torchmetrics differs (project rule: use torchmetrics where the definition is the same;
here it is not, so the metrics are implemented):

- ``torchmetrics.functional.bleu_score`` breaks a closest-length tie towards the reference
  listed first, not the shorter one; returns exactly 0 when some order has no match instead
  of coco-caption's tiny smoothed value; leaves out the 1e-15 / 1e-9 terms (a relative
  difference below 1e-8 otherwise); splits on whitespace only (no lower-casing, punctuation
  stays); and gives one BLEU-n per call. On whitespace-tokenised, lower-case captions with a
  match at every order and no length tie, both give the same BLEU-1…4.
- ``torchmetrics.functional.rouge_score`` (``rougeL``) is an F1 (β = 1, not 1.2); with several
  references it keeps the P and R of the single reference with the best F (or averages the
  F's), where coco-caption takes the maximum P and the maximum R separately; and its
  normaliser replaces every non-alphanumeric character by a space (``t-shirt`` -> ``t shirt``).
- torchmetrics has no CIDEr.

Raises (every public function): ``ValueError`` for candidates and references of different
lengths, an image with no reference, an empty corpus, and a caption that is neither a
string nor a list of strings.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from vlkit.metrics.caption_tokens import Caption, Tokens, caption_tokenize, tokenize_corpus

__all__ = [
    "CaptionMetrics",
    "caption_scores",
    "caption_tokenize",
    "cider_d",
    "corpus_bleu",
    "rouge_l",
    "sentence_bleu",
]

_TINY = 1e-15  # coco-caption's `tiny`: added to matched n-grams and the candidate length
_SMALL = 1e-9  # coco-caption's `small`: added to candidate n-grams and the reference length


def _check_positive(value: float, name: str, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")


def _ngram_counts(tokens: Sequence[str], max_n: int) -> Counter[tuple[str, ...]]:
    """Counts of the n-grams of orders 1…max_n of one caption."""
    return Counter(tuple(tokens[i : i + k]) for k in range(1, max_n + 1) for i in range(len(tokens) - k + 1))


# ---------------------------------------------------------------------------------------- BLEU


def _bleu_statistics(
    candidate: Tokens, references: list[Tokens], max_n: int
) -> tuple[int, int, list[int], list[int]]:
    """(candidate length, closest reference length, clipped matches per order, candidate n-grams per order)."""
    length = len(candidate)
    # closest reference length; on a tie the smaller (shorter) one, as coco-caption's min over (|diff|, len)
    reference_length = min((abs(len(ref) - length), len(ref)) for ref in references)[1]
    max_reference_counts: Counter[tuple[str, ...]] = Counter()
    for reference in references:
        max_reference_counts |= _ngram_counts(reference, max_n)  # element-wise max
    correct = [0] * max_n
    for ngram, count in _ngram_counts(candidate, max_n).items():
        correct[len(ngram) - 1] += min(count, max_reference_counts[ngram])
    guess = [max(0, length - k + 1) for k in range(1, max_n + 1)]
    return length, reference_length, correct, guess


def _bleu_from_statistics(
    length: int, reference_length: int, correct: list[int], guess: list[int]
) -> list[float]:
    scores, product = [], 1.0
    for k, (matched, total) in enumerate(zip(correct, guess), start=1):
        product *= (matched + _TINY) / (total + _SMALL)
        scores.append(product ** (1.0 / k))
    ratio = (length + _TINY) / (reference_length + _SMALL)
    if ratio < 1:
        penalty = math.exp(1.0 - 1.0 / ratio)
        scores = [score * penalty for score in scores]
    return scores


def _corpus_bleu_tokens(candidates: list[Tokens], references: list[list[Tokens]], max_n: int) -> list[float]:
    length = reference_length = 0
    correct, guess = [0] * max_n, [0] * max_n
    for candidate, image_references in zip(candidates, references):
        c, r, image_correct, image_guess = _bleu_statistics(candidate, image_references, max_n)
        length, reference_length = length + c, reference_length + r
        correct = [a + b for a, b in zip(correct, image_correct)]
        guess = [a + b for a, b in zip(guess, image_guess)]
    return _bleu_from_statistics(length, reference_length, correct, guess)


def corpus_bleu(
    candidates: Sequence[Caption], references: Sequence[Sequence[Caption]], max_n: int = 4
) -> list[float]:
    """Corpus BLEU-1…BLEU-max_n as coco-caption computes it (see the module docstring).

    Args:
        candidates: one generated caption per image (strings, or lists of tokens).
        references: per image, a non-empty list of reference captions.
        max_n: the highest n-gram order, a positive integer.

    Returns:
        ``[BLEU-1, …, BLEU-max_n]``, each in ``[0, 1]``; n-gram counts and lengths are summed
        over the corpus before the precisions and the brevity penalty are taken.

    Raises:
        ValueError: on a malformed corpus (see the module docstring) or ``max_n < 1``.
    """
    _check_positive(max_n, "max_n", integer=True)
    return _corpus_bleu_tokens(*tokenize_corpus(candidates, references), max_n)


def sentence_bleu(candidate: Caption, references: Sequence[Caption], max_n: int = 4) -> list[float]:
    """BLEU-1…BLEU-max_n of one caption: :func:`corpus_bleu` of a one-image corpus.

    This is coco-caption's per-image BLEU; the mean of it over images is not the corpus BLEU.

    Args:
        candidate: the generated caption (a string, or a list of tokens).
        references: its non-empty list of reference captions.
        max_n: the highest n-gram order, a positive integer.

    Returns:
        ``[BLEU-1, …, BLEU-max_n]``, each in ``[0, 1]``.

    Raises:
        ValueError: on a malformed caption, an empty reference list or ``max_n < 1``.
    """
    return corpus_bleu([candidate], [references], max_n=max_n)


# ------------------------------------------------------------------------------------- ROUGE-L


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, O(len(a)·len(b)) time, O(len(b)) memory."""
    row = [0] * (len(b) + 1)  # row[j] = LCS(a[:i], b[:j]) for the current i
    for x in a:
        diagonal = 0  # LCS(a[:i-1], b[:j-1])
        for j, y in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def _rouge_l_image(candidate: Tokens, references: list[Tokens], beta: float) -> float:
    if not candidate:
        return 0.0
    lcs = [_lcs_length(candidate, reference) for reference in references]
    precision = max(common / len(candidate) for common in lcs)
    recall = max((common / len(ref) for common, ref in zip(lcs, references) if ref), default=0.0)
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


def _rouge_l_tokens(candidates: list[Tokens], references: list[list[Tokens]], beta: float) -> float:
    scores = [_rouge_l_image(cand, refs, beta) for cand, refs in zip(candidates, references)]
    return sum(scores) / len(scores)


def rouge_l(
    candidates: Sequence[Caption], references: Sequence[Sequence[Caption]], beta: float = 1.2
) -> float:
    """Mean over images of coco-caption's ROUGE-L (see the module docstring).

    Args:
        candidates: one generated caption per image (strings, or lists of tokens).
        references: per image, a non-empty list of reference captions.
        beta: weight of recall against precision in the F-measure, > 0 (coco-caption: 1.2).

    Returns:
        ROUGE-L in ``[0, 1]``.

    Raises:
        ValueError: on a malformed corpus (see the module docstring) or ``beta <= 0``.
    """
    _check_positive(beta, "beta")
    return _rouge_l_tokens(*tokenize_corpus(candidates, references), beta)


# ------------------------------------------------------------------------------------- CIDEr-D


def _cider_d_tokens(candidates: list[Tokens], references: list[list[Tokens]], n: int, sigma: float) -> float:
    reference_counts = [[_ngram_counts(ref, n) for ref in refs] for refs in references]
    document_frequency: Counter[tuple[str, ...]] = Counter()
    for counts in reference_counts:
        document_frequency.update(set().union(*counts))  # each image counts once per n-gram
    log_images = math.log(len(candidates))

    def vectors(counts: Counter[tuple[str, ...]]) -> tuple[list[dict[tuple[str, ...], float]], list[float]]:
        """Per order: the tf-idf vector and its norm."""
        vector: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
        for ngram, count in counts.items():
            vector[len(ngram) - 1][ngram] = count * (
                log_images - math.log(max(1.0, document_frequency[ngram]))
            )
        return vector, [math.sqrt(sum(w * w for w in order.values())) for order in vector]

    image_scores = []
    for candidate, image_references, image_reference_counts in zip(candidates, references, reference_counts):
        cand_vector, cand_norm = vectors(_ngram_counts(candidate, n))
        total = 0.0
        for reference, counts in zip(image_references, image_reference_counts):
            ref_vector, ref_norm = vectors(counts)
            penalty = math.exp(-((len(candidate) - len(reference)) ** 2) / (2 * sigma**2))
            for k in range(n):
                if cand_norm[k] == 0 or ref_norm[k] == 0:
                    continue
                clipped = sum(
                    min(weight, ref_vector[k].get(ngram, 0.0)) * ref_vector[k].get(ngram, 0.0)
                    for ngram, weight in cand_vector[k].items()
                )
                total += clipped / (cand_norm[k] * ref_norm[k]) * penalty
        image_scores.append(10.0 * total / (n * len(image_references)))
    return sum(image_scores) / len(image_scores)


def cider_d(
    candidates: Sequence[Caption], references: Sequence[Sequence[Caption]], n: int = 4, sigma: float = 6.0
) -> float:
    """CIDEr-D of a corpus as coco-caption computes it, idf from this corpus's references.

    See the module docstring for the definition; score the whole test set in one call, since
    the idf (and so every image's score) depends on the corpus, and one image alone scores 0.

    Args:
        candidates: one generated caption per image (strings, or lists of tokens).
        references: per image, a non-empty list of reference captions.
        n: the highest n-gram order, a positive integer (coco-caption: 4).
        sigma: width of the Gaussian length penalty in words, > 0 (coco-caption: 6).

    Returns:
        CIDEr-D in ``[0, 10]``.

    Raises:
        ValueError: on a malformed corpus (see the module docstring), ``n < 1`` or ``sigma <= 0``.
    """
    _check_positive(n, "n", integer=True)
    _check_positive(sigma, "sigma")
    return _cider_d_tokens(*tokenize_corpus(candidates, references), n, sigma)


# ----------------------------------------------------------------------------------- together


def _scores_from_tokens(candidates: list[Tokens], references: list[list[Tokens]]) -> dict[str, float]:
    bleu = _corpus_bleu_tokens(candidates, references, 4)
    return {
        **{f"bleu{k}": score for k, score in enumerate(bleu, start=1)},
        "rouge_l": _rouge_l_tokens(candidates, references, 1.2),
        "cider_d": _cider_d_tokens(candidates, references, 4, 6.0),
    }


def caption_scores(
    candidates: Sequence[Caption], references: Sequence[Sequence[Caption]]
) -> dict[str, float]:
    """All coco-caption metrics of a corpus, each with its default settings.

    Args:
        candidates: one generated caption per image (strings, or lists of tokens).
        references: per image, a non-empty list of reference captions.

    Returns:
        ``{"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l"}`` in ``[0, 1]`` and ``"cider_d"`` in ``[0, 10]``.

    Raises:
        ValueError: on a malformed corpus (see the module docstring).
    """
    return _scores_from_tokens(*tokenize_corpus(candidates, references))


class CaptionMetrics(Metric):
    """BLEU-1…4, ROUGE-L and CIDEr-D of all captions seen since the last reset (coco-caption definitions).

    ``update(candidates: list[str], references: list[list[str]])`` adds a batch of images
    (a caption may also be a list of tokens); ``compute() -> dict[str, Tensor]`` gives
    :func:`caption_scores` of everything added, as float32 scalars under the keys
    ``bleu1 bleu2 bleu3 bleu4 rouge_l cider_d``. The metrics are corpus-level, so the value
    of ``forward`` (one batch alone) is not comparable to ``compute``'s.

    Captions are validated and tokenised in ``update`` and kept as byte tensors (one JSON
    record per image), so under distributed training torchmetrics gathers them from every
    process like any ``"cat"`` state and ``compute`` scores the whole corpus on each process.
    A ``DistributedSampler`` that pads the last batch repeats images, which changes the
    score slightly, as for every metric.

    Raises:
        ValueError: in ``update`` on a malformed batch, in ``compute`` when nothing was added.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    captions: list[Tensor] | Tensor

    def __init__(self) -> None:
        super().__init__()
        # byte values (0…255, exact in every float dtype) of `json([tokens, [ref tokens…]]) + "\0"` per image
        self.add_state("captions", default=[], dist_reduce_fx="cat")

    def update(self, candidates: Sequence[Caption], references: Sequence[Sequence[Caption]]) -> None:
        """Add one caption and its references per image; see the class docstring."""
        candidate_tokens, reference_tokens = tokenize_corpus(candidates, references)
        records = b"".join(
            json.dumps([cand, refs]).encode("ascii") + b"\0"  # JSON escapes control and non-ASCII
            for cand, refs in zip(candidate_tokens, reference_tokens)
        )
        data = torch.frombuffer(bytearray(records), dtype=torch.uint8)
        self.captions.append(data.to(device=self.device, dtype=self.dtype))

    def compute(self) -> dict[str, Tensor]:
        """The scores of all images added since the last reset; see the class docstring."""
        data = dim_zero_cat(self.captions) if len(self.captions) else torch.zeros(0)
        records = [
            json.loads(r) for r in data.round().to(torch.uint8).cpu().numpy().tobytes().split(b"\0")[:-1]
        ]
        if not records:
            raise ValueError(
                "CaptionMetrics has no captions: call update(candidates, references) before compute()"
            )
        scores = _scores_from_tokens([cand for cand, _ in records], [refs for _, refs in records])
        return {
            name: torch.tensor(value, dtype=torch.float32, device=self.device)
            for name, value in scores.items()
        }
