"""The visual-tokenizer protocol: frozen patch tokens -> projector -> causal language model.

After GVT (Wang et al., 2023) and Cambrian-1 (Tong et al., 2024): an encoder is judged by how
well a small multimodal LLM built on its frozen patch tokens captions images and answers
questions about them. The pipeline is

    [projector(tokens)] + [bos] + prompt + " " + answer + [eos]

with the projected tokens fed as `inputs_embeds` and the loss on the answer and eos only.
Stage 1 trains on captions, stage 2 on every question kind mixed (LLaVA's two stages). The
projector always trains; the "tiny" language model is built from a config and trains with it,
a pretrained one stays frozen. Held-out images are answered by greedy decoding and scored:
CIDEr and BLEU-4 for captions (x100, as the papers report them), VQA accuracy (exact match
against a single reference, VQAv2's soft accuracy against ten), accuracy / MAE / RMSE for
object counting (OC) and accuracy for multi-class identification (MCI); accuracies in
percent.

Speed: a causal LM's visual prefix never attends to the text after it, so its keys and values
are computed once per image and shared by all of that image's questions (the KV cache,
indexed per question) in training as in decoding; the output head is applied only where a
loss or a next token is needed (a pretrained vocabulary over every position costs GBs).

Budget: the cost is the visual prefix (every token of every image in a step goes through the
LM), so the default steps train in 15-50 s of one CPU core (16 to 256 tokens per image;
answering shapes' 8,000 test questions adds ~5-25 s), and show the LM fewer image views than
shapes has training images: stage 1 takes ~11 images a step (1,100 in all), stage 2 ~3 with all
their questions (450). In that budget the tiny LM learns captions and the colour / background
questions, but not what a shape *is*, and counting (OC) and identification (MCI), which ask
about every object, the small ones (10 px of 64) included, stay at the blind control's 50 / 50
for every encoder. What they would take is measured in benchmarks/RESULTS.md ("Visual-tokenizer
protocol: what counting (OC) and identification (MCI) need", with
`benchmarks/bench_mllm_budget.py`): even given tokens that hold each object's kind exactly, the
tiny LM needs about 3,000 steps of 32 images of OC / MCI questions alone to answer them (at
300 it is still at the prior), while a conv net trained on the presence labels reads presence
from random vit_pico's tokens at 95% after 500 steps. So with the tiny LM these two scores
measure the language model's budget, not the encoder: use a pretrained LM, or a GPU and many
more steps (`--set stage2_steps=... --device cuda`), when they matter.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitbench.data.questions import QUESTION_KINDS, Question
from vitbench.errors import VitbenchError

PROJECTORS = ("linear", "mlp", "perceiver")
PERCEIVER_LATENTS = 32  # GVT / Flamingo resampler: a fixed number of visual tokens per image
TINY_LM = dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4,
               num_key_value_heads=4, intermediate_size=344)  # SwiGLU's 8/3 x hidden
SPECIAL_TOKENS = dict(pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                      unk_token="<unk>")
_POSITIONS_SPARE = 256  # tiny LM positions past the longest training sequence: eval prompts
_EVAL_IMAGES = 128  # images per decoding chunk (one visual prefix pass each)
_WARMUP = 0.05  # share of each stage's steps with a linearly rising learning rate
_IGNORE = -100  # cross_entropy's ignore_index: positions without a loss
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                 "nine", "ten")
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


@dataclass(frozen=True)
class MllmSettings:
    """How the pipeline is built and trained.

    Attributes:
        projector: "linear"; "mlp" (2 layers with GELU, LLaVA-1.5); or "perceiver" (a
            resampler: PERCEIVER_LATENTS learned latents cross-attend to the tokens, GVT /
            Flamingo).
        language_model: "tiny" (a 2-layer Llama, hidden 128, 4 heads, trained from scratch
            with a word-level tokenizer of the training text), or a transformers causal-LM
            name or local path, loaded with its own tokenizer and kept frozen.
        stage1_steps: caption-only steps.
        stage2_steps: steps on every question kind mixed.
        batch_size: training sequences (question + one distinct reference answer) per
            step; a step takes whole images with all of their sequences of the stage.
        lr: AdamW peak learning rate of each stage (linear warmup, cosine decay).
        seed: initialisation and batch order.
        max_new_tokens: decoding stops after this many tokens without an eos.
        encoder_lr_scale: with `TunedTokens` (joint tuning), the encoder trains in stage 2
            at lr x this (the LLaVA / GVT practice of a smaller rate for the pretrained tower).
    """

    projector: str = "mlp"
    language_model: str = "tiny"
    stage1_steps: int = 100
    stage2_steps: int = 150
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0
    max_new_tokens: int = 24
    encoder_lr_scale: float = 0.1


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields make generated == ambiguous
class MllmHits:
    """Per-question outcomes, in eval-question order within each kind, for bootstraps."""

    vqa: np.ndarray  # (n_vqa,) `vqa_accuracy` per question: 0/1 with one reference
    oc: np.ndarray  # (n_oc,) 1.0 where the parsed count was right
    mci: np.ndarray  # (n_mci,) 1.0 where yes/no was right
    oc_error: np.ndarray  # (n_oc,) predicted minus true count (unparseable: predicted 0)
    cider: np.ndarray  # (n_caption,) per-image CIDEr x100 (its mean is caption_cider)


@dataclass(frozen=True, eq=False)
class MllmScores:
    """Outcome of `mllm_evaluate`. Accuracies in percent, CIDEr / BLEU-4 x100; a metric
    whose kind has no eval question is NaN."""

    caption_cider: float
    caption_bleu4: float
    vqa_acc: float
    oc_acc: float
    oc_mae: float
    oc_rmse: float
    mci_acc: float
    hits: MllmHits
    predictions: list[str]  # one per eval question, in order
    seconds: float = 0.0


@dataclass
class MllmPipeline:
    """A trained pipeline: what `answer_questions` decodes with."""

    projector: nn.Module
    lm: nn.Module  # a transformers causal LM
    tokenizer: Any  # a transformers fast tokenizer
    mean: torch.Tensor  # (D,) training-token statistics the tokens are standardised with
    std: torch.Tensor
    frozen_lm: bool
    max_positions: int | None  # the LM's position limit, None when it has none
    token_shape: tuple[int, int]  # (T, D) of the tokens it was trained on
    prefix_length: int  # visual positions the LM sees per image


class TunedTokens:
    """Patch tokens computed on demand by an encoder that trains with the pipeline: the
    jointly tuned rows of GVT's table. Stands wherever token arrays go (rows are images);
    stage 1 keeps the encoder frozen (the projector aligns first), stage 2 tunes it.

    Args:
        encoder: a vitbench Encoder, tuned in place: pass a copy to keep the original.
        images: image rows -> their preprocessed pixels, (B, 3, H, W).
        frozen: (n_images, T, D) the encoder's tokens before tuning (the feature cache's):
            they give the shape and the standardisation statistics without a second pass.
    """

    def __init__(self, encoder: Any, images: Callable[[list[int]], torch.Tensor],
                 frozen: torch.Tensor):
        self.encoder, self.images, self.frozen = encoder, images, frozen
        self.shape, self.n_images = tuple(frozen.shape), len(frozen)
        self.tuning = False  # True in stage 2: tokens then carry gradients to the encoder

    def __len__(self) -> int:
        return self.n_images

    def __getitem__(self, rows: slice | Sequence[int]) -> torch.Tensor:
        rows = list(range(self.n_images)[rows]) if isinstance(rows, slice) else list(rows)
        pixels = self.images([int(r) for r in rows]).to(self.encoder.device)
        with self.encoder._autocast(), torch.set_grad_enabled(
                self.tuning and torch.is_grad_enabled()):
            tokens = self.encoder._forward(pixels).tokens
        if tokens is None:
            raise VitbenchError(f"{self.encoder.spec.name} gives no patch tokens to tune on")
        return tokens.float()

    def to(self, device: torch.device) -> TunedTokens:
        self.encoder.to(device, self.encoder.dtype)
        return self

    def parameters(self) -> list[nn.Parameter]:
        return [p for module in self.encoder.modules() for p in module.parameters()]


Visual = torch.Tensor | TunedTokens  # (n_images, T, D) tokens, stored or computed


@dataclass(frozen=True)
class _Encoded:
    """One question as token ids: prompt (bos first) and its distinct reference answers
    (eos last)."""

    image: int
    kind: str
    prompt: tuple[int, ...]
    answers: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class _Sequence:
    """A training sequence: a question's prompt followed by one of its reference answers."""

    question: _Encoded
    answer: tuple[int, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        return self.question.prompt + self.answer


# --- the protocol ----------------------------------------------------------------------------

def mllm_evaluate(train_tokens: Any, train_questions: Sequence[Question], eval_tokens: Any,
                  eval_questions: Sequence[Question], settings: MllmSettings = MllmSettings(),
                  device: str | torch.device = "cpu") -> MllmScores:
    """Train a projector (+ tiny LM) on `train_questions`, then score `eval_questions`.

    Args:
        train_tokens: (n_train_images, T, D) frozen patch tokens, numpy or torch; row i is
            the image that questions with `image == i` ask about.
        train_questions: what to train on (stage 1 uses the "caption" ones).
        eval_tokens: (n_eval_images, T, D) tokens of held-out images, same encoder.
        eval_questions: what to answer and score.
        settings: see `MllmSettings`.
        device: torch device of the training and decoding.

    Returns:
        `MllmScores`; the same inputs give the same scores.

    Raises:
        VitbenchError: bad token arrays, questions pointing outside them, unknown kinds,
            projector or language model, or no captions to train stage 1 on.
    """
    started = time.perf_counter()
    train_x, eval_x = _tokens(train_tokens, "train_tokens"), _tokens(eval_tokens, "eval_tokens")
    _check_same_encoder(tuple(train_x.shape[1:]), eval_x, "eval_tokens")
    _check_questions(eval_questions, len(eval_x), "eval_questions")
    pipeline = train_mllm(train_x, train_questions, settings, device)
    predictions = answer_questions(pipeline, eval_x, eval_questions, settings.max_new_tokens)
    scores = score_answers(eval_questions, predictions)
    return dataclasses.replace(scores, seconds=time.perf_counter() - started)


def train_mllm(train_tokens: Any, train_questions: Sequence[Question],
               settings: MllmSettings = MllmSettings(),
               device: str | torch.device = "cpu") -> MllmPipeline:
    """Build the pipeline and run both training stages (see the module docstring)."""
    _check_settings(settings)
    x = _tokens(train_tokens, "train_tokens")
    _check_questions(train_questions, len(x), "train_questions")
    if settings.stage1_steps > 0 and not any(q.kind == "caption" for q in train_questions):
        raise VitbenchError("stage 1 trains on captions but train_questions has none; "
                            "set stage1_steps=0")
    device = torch.device(device)
    # Seeded initialisation without touching the caller's global random state.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(settings.seed)
        pipeline, encoded = _build(x, train_questions, settings, device)
    x = x.to(device)
    rng = np.random.default_rng(settings.seed)
    stage1 = [q for q in encoded if q.kind == "caption"]
    _train_stage(pipeline, x, stage1, settings.stage1_steps, settings, rng)
    if isinstance(x, TunedTokens):
        x.tuning = True
    try:
        _train_stage(pipeline, x, encoded, settings.stage2_steps, settings, rng)
    finally:
        if isinstance(x, TunedTokens):
            x.tuning = False
    return pipeline


def answer_questions(pipeline: MllmPipeline, tokens: Any, questions: Sequence[Question],
                     max_new_tokens: int = 24) -> list[str]:
    """Greedy answers, one per question, decoded with the visual prefix computed once per
    image. Questions are batched by prompt length, so no batch needs padding."""
    x = _tokens(tokens, "tokens")
    _check_same_encoder(pipeline.token_shape, x, "tokens")
    _check_questions(questions, len(x), "questions", answered=False)
    encoded = _encode(pipeline.tokenizer, questions, with_answers=False)
    _check_positions(pipeline, encoded, max_new_tokens)
    answers: list[str] = [""] * len(questions)
    pipeline.lm.eval()
    with torch.no_grad():
        for start in range(0, len(x), _EVAL_IMAGES):
            chunk = [i for i, q in enumerate(encoded)
                     if start <= q.image < start + _EVAL_IMAGES]
            if chunk:
                _answer_chunk(pipeline, x[start:start + _EVAL_IMAGES], start,
                              [encoded[i] for i in chunk], chunk, max_new_tokens, answers)
    return answers


# --- scoring ---------------------------------------------------------------------------------

def score_answers(questions: Sequence[Question], predictions: Sequence[str]) -> MllmScores:
    """Score predicted answers against the questions' references (see MllmScores)."""
    if len(questions) != len(predictions):
        raise VitbenchError(f"{len(predictions)} predictions for {len(questions)} questions")
    for q in questions:
        _check_question(q, "questions")
    by_kind = {kind: [(q, p) for q, p in zip(questions, predictions, strict=True)
                      if q.kind == kind] for kind in QUESTION_KINDS}
    cider, bleu4, cider_per_image = caption_scores(
        [q.answers for q, _ in by_kind["caption"]], [p for _, p in by_kind["caption"]])
    vqa = np.array([vqa_accuracy(p, q.answers) for q, p in by_kind["vqa"]], dtype=np.float64)
    mci = np.array([exact_match(p, q.answers) for q, p in by_kind["mci"]], dtype=np.float64)
    true = np.array([int(q.answers[0]) for q, _ in by_kind["oc"]], dtype=np.float64)
    parsed = [parse_count(p) for _, p in by_kind["oc"]]
    oc = np.array([n == t for n, t in zip(parsed, true, strict=True)], dtype=np.float64)
    # An unparseable count is wrong, and its error is measured as if it had said 0: a model
    # that cannot produce a number is charged the full count of what it missed.
    oc_error = np.array([0 if n is None else n for n in parsed], dtype=np.float64) - true
    return MllmScores(
        caption_cider=cider, caption_bleu4=bleu4, vqa_acc=_percent(vqa), oc_acc=_percent(oc),
        oc_mae=_mean(np.abs(oc_error)), oc_rmse=math.sqrt(_mean(oc_error ** 2)),
        mci_acc=_percent(mci),
        hits=MllmHits(vqa=vqa, oc=oc, mci=mci, oc_error=oc_error, cider=cider_per_image),
        predictions=list(predictions))


def caption_scores(references: Sequence[Sequence[str]], candidates: Sequence[str]
                   ) -> tuple[float, float, np.ndarray]:
    """(CIDEr-D, BLEU-4, per-image CIDEr-D), all x100, from pycocoevalcap.

    Texts are lowercased and stripped of punctuation here, which is what the COCO toolkit's
    PTBTokenizer would do (it needs Java).
    """
    if not candidates:
        return math.nan, math.nan, np.zeros(0)
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [normalise_answer(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [normalise_answer(c)] for i, c in enumerate(candidates)}
    cider, per_image = Cider().compute_score(gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return 100 * float(cider), 100 * float(bleu[3]), 100 * np.asarray(per_image, np.float64)


def normalise_answer(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed: how answers are compared."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
    """The normalised prediction equals one of the normalised references."""
    return normalise_answer(prediction) in {normalise_answer(a) for a in answers}


def vqa_soft_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQAv2's accuracy against its 10 human answers: min(#humans that said it / 3, 1)."""
    return _agreement(prediction, answers, 3)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The VQA score of one answer: VQAv2's rule with the three agreeing humans capped at the
    number of references, so ten references give `vqa_soft_accuracy` and a single one an
    exact match."""
    return _agreement(prediction, answers, min(3, len(answers)))


def _agreement(prediction: str, answers: Sequence[str], needed: int) -> float:
    said = Counter(normalise_answer(a) for a in answers)[normalise_answer(prediction)]
    return min(said / needed, 1.0)


def parse_count(prediction: str) -> int | None:
    """The first number in an answer, as digits or a word ("two"); None if there is none."""
    for word in normalise_answer(prediction).split():
        if word.isdecimal():
            return int(word)
        if word in _NUMBER_WORDS:
            return _NUMBER_WORDS.index(word)
    return None


def _percent(hits: np.ndarray) -> float:
    return 100 * _mean(hits)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


# --- inputs ----------------------------------------------------------------------------------

def _tokens(x: Any, name: str) -> Visual:
    """Float32 (N, T, D) tokens on the CPU (or the encoder that computes them)."""
    if isinstance(x, TunedTokens):
        _tokens(x.frozen, name)  # the same checks on what it starts from
        return x
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or 0 in x.shape:
        raise VitbenchError(f"{name} must be a non-empty (n_images, tokens, dim) array, got "
                            f"shape {x.shape}")
    if not np.isfinite(x).all():
        raise VitbenchError(f"{name} contains NaN or inf; check the encoder's outputs")
    return torch.from_numpy(x)


def _check_settings(settings: MllmSettings) -> None:
    if settings.projector not in PROJECTORS:
        raise VitbenchError(f"unknown projector {settings.projector!r}; "
                            f"choose one of {', '.join(PROJECTORS)}")
    if min(settings.stage1_steps, settings.stage2_steps) < 0 or settings.batch_size < 1:
        raise VitbenchError(f"steps must be >= 0 and batch_size >= 1, got {settings}")
    if not settings.lr > 0 or settings.max_new_tokens < 1:
        raise VitbenchError(f"lr must be > 0 and max_new_tokens >= 1, got {settings}")


def _check_same_encoder(shape: tuple[int, int], x: Visual, name: str) -> None:
    if tuple(x.shape[1:]) != tuple(shape):
        raise VitbenchError(f"{name} are (n, {x.shape[1]}, {x.shape[2]}) but training used "
                            f"(n, {shape[0]}, {shape[1]}): tokens must come from one encoder "
                            "at one resolution")


def _check_questions(questions: Sequence[Question], n_images: int, name: str,
                     answered: bool = True) -> None:
    """Questions about existing rows, of known kinds, with (when `answered`) references."""
    if not questions:
        raise VitbenchError(f"{name} is empty")
    for q in questions:
        if not 0 <= q.image < n_images:
            raise VitbenchError(f"{name} asks about image {q.image}, outside the {n_images} "
                                "rows of its token array")
        _check_question(q, name, answered)


def _check_question(q: Question, name: str, answered: bool = True) -> None:
    if q.kind not in QUESTION_KINDS:
        raise VitbenchError(f"{name} has a question of unknown kind {q.kind!r}; "
                            f"kinds: {', '.join(QUESTION_KINDS)}")
    if answered and (not q.answers or q.kind == "oc" and not q.answers[0].isdecimal()):
        raise VitbenchError(f"{name} has a {q.kind} question without a valid reference "
                            f"answer: {q.prompt!r} -> {q.answers}")


def _check_positions(pipeline: MllmPipeline, encoded: list[_Encoded], max_new_tokens: int
                     ) -> None:
    longest = pipeline.prefix_length + max(len(q.prompt) for q in encoded) + max_new_tokens
    if pipeline.max_positions is not None and longest > pipeline.max_positions:
        raise VitbenchError(f"visual tokens + prompt + max_new_tokens need {longest} positions "
                            f"but the language model has {pipeline.max_positions}")


# --- building --------------------------------------------------------------------------------

def _build(x: Visual, questions: Sequence[Question], settings: MllmSettings,
           device: torch.device) -> tuple[MllmPipeline, list[_Encoded]]:
    """The untrained pipeline, and the questions encoded with its tokenizer."""
    # Encoders differ in token scale by orders of magnitude (raw pixels vs normalised ViT
    # outputs): standardising per dimension with training statistics makes one learning rate
    # fit all. Constant dimensions are only centred, so all-zero (blind) tokens stay zero.
    mean, std = _token_stats(x)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    prefix = PERCEIVER_LATENTS if settings.projector == "perceiver" else x.shape[1]
    if settings.language_model == "tiny":
        tokenizer = word_tokenizer(questions)
        encoded = _encode(tokenizer, questions)
        longest = max(len(q.prompt) + max(map(len, q.answers)) for q in encoded)
        lm, frozen = _tiny_lm(tokenizer, prefix + longest + _POSITIONS_SPARE), False
    else:
        tokenizer, lm = _pretrained_lm(settings.language_model)
        encoded, frozen = _encode(tokenizer, questions), True
    hidden = lm.get_input_embeddings().embedding_dim
    projector = _projector(settings.projector, x.shape[1], x.shape[2], hidden)
    limit = (getattr(lm.config, "n_positions", None)
             or getattr(lm.config, "max_position_embeddings", None))
    pipeline = MllmPipeline(
        projector=projector.to(device), lm=lm.to(device), tokenizer=tokenizer,
        mean=mean.to(device), std=std.to(device), frozen_lm=frozen, max_positions=limit,
        token_shape=(x.shape[1], x.shape[2]), prefix_length=prefix)
    return pipeline, encoded


def _token_stats(x: Visual) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std over every token of every image (a tuned encoder's as
    they were before tuning)."""
    x = x.frozen if isinstance(x, TunedTokens) else x
    flat = x.reshape(-1, x.shape[2])
    return flat.mean(0), flat.std(0)


def word_tokenizer(questions: Sequence[Question]) -> Any:
    """A word-level tokenizer (lowercased, split on whitespace and punctuation) over the
    words of the questions and answers, wrapped as a transformers fast tokenizer so that the
    tiny LM and a pretrained one's AutoTokenizer go through the same code."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    normalizer, splitter = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    texts = {q.prompt for q in questions} | {a for q in questions for a in q.answers}
    words = sorted({word for text in texts
                    for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))})
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS.values(), *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, splitter
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def _tiny_lm(tokenizer: Any, positions: int) -> nn.Module:
    # Llama rather than GPT-2: with rotary positions the 2-layer model learned counting and
    # identification from position-coded tokens in 500 stage-2 steps where GPT-2 stayed at
    # chance; the SwiGLU width (8/3 x hidden) keeps its cost per token GPT-2's.
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=positions,
                         bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, **TINY_LM)
    return LlamaForCausalLM(config)


def _pretrained_lm(name: str) -> tuple[Any, nn.Module]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:  # never trust_remote_code: a name must not run code from the hub
        tokenizer = AutoTokenizer.from_pretrained(name)
        lm = AutoModelForCausalLM.from_pretrained(name)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VitbenchError(f"cannot load language model {name!r}: {first}") from exc
    if tokenizer.eos_token_id is None:
        raise VitbenchError(f"language model {name!r} has no eos token to end answers with")
    lm.requires_grad_(False)
    return tokenizer, lm.eval()


def _projector(kind: str, n_tokens: int, dim: int, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, hidden)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
    return PerceiverResampler(n_tokens, dim, hidden)


class PerceiverResampler(nn.Module):
    """Flamingo's resampler, one block: learned latents cross-attend to the (position-
    embedded) tokens and to themselves, then a feed-forward layer; the LM sees only the
    PERCEIVER_LATENTS latents, however many tokens the encoder gives."""

    def __init__(self, n_tokens: int, dim: int, hidden: int, heads: int = 4):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.position = nn.Parameter(torch.randn(n_tokens, hidden) * 0.02)
        self.latents = nn.Parameter(torch.randn(PERCEIVER_LATENTS, hidden) * 0.02)
        self.norm_media, self.norm_latents = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 4 * hidden), nn.GELU(),
                                 nn.Linear(4 * hidden, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        media = self.norm_media(self.proj(x) + self.position)
        latents = self.latents.expand(len(x), -1, -1)
        queries = self.norm_latents(latents)
        keys = torch.cat([media, queries], dim=1)
        latents = latents + self.attention(queries, keys, keys, need_weights=False)[0]
        return latents + self.ffn(latents)


# --- text ------------------------------------------------------------------------------------

def _encode(tokenizer: Any, questions: Sequence[Question], with_answers: bool = True
            ) -> list[_Encoded]:
    """Token ids of every question, each distinct text encoded once."""
    prompts = _ids_of(tokenizer, {q.prompt for q in questions})
    answers = _ids_of(tokenizer, {a for q in questions for a in q.answers} if with_answers
                      else set(), prefix=" ")
    bos = () if tokenizer.bos_token_id is None else (tokenizer.bos_token_id,)
    eos = (tokenizer.eos_token_id,)
    return [_Encoded(q.image, q.kind, bos + prompts[q.prompt],
                     tuple(answers[a] + eos for a in dict.fromkeys(q.answers)) if with_answers
                     else ())
            for q in questions]


def _ids_of(tokenizer: Any, texts: set[str], prefix: str = "") -> dict[str, tuple[int, ...]]:
    # The space before an answer is how a pretrained BPE tokenizer sees a following word;
    # the word-level one ignores it.
    if not texts:
        return {}
    ordered = sorted(texts)
    ids = tokenizer([prefix + t for t in ordered], add_special_tokens=False)["input_ids"]
    return {text: tuple(row) for text, row in zip(ordered, ids, strict=True)}


def _pad(rows: list[tuple[int, ...]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


# --- training --------------------------------------------------------------------------------

def _train_stage(pipeline: MllmPipeline, x: Visual, encoded: list[_Encoded], steps: int,
                 settings: MllmSettings, rng: np.random.Generator) -> None:
    if steps <= 0 or not encoded:
        return
    # Every distinct reference is a training sequence (COCO captioners train on all five
    # captions of an image), grouped by image: a step takes whole images with all of their
    # sequences until it holds about batch_size, so each visual prefix serves several.
    by_image: dict[int, list[_Sequence]] = {}
    for q in encoded:
        by_image.setdefault(q.image, []).extend(_Sequence(q, answer) for answer in q.answers)
    images = np.array(sorted(by_image))
    n_sequences = sum(map(len, by_image.values()))
    per_step = max(1, round(settings.batch_size * len(images) / n_sequences))
    groups = [{"params": [p for p in _modules(pipeline).parameters() if p.requires_grad],
               "lr": settings.lr}]
    if isinstance(x, TunedTokens) and x.tuning:
        groups.append({"params": [p.requires_grad_() for p in x.parameters()],
                       "lr": settings.lr * settings.encoder_lr_scale})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, steps))
    _modules(pipeline).train()
    if pipeline.frozen_lm:
        pipeline.lm.eval()
    for batch in _batches(images, per_step, steps, rng):
        loss = _loss(pipeline, x, [seq for i in batch for seq in by_image[i]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    _modules(pipeline).eval()


def _modules(pipeline: MllmPipeline) -> nn.ModuleList:
    return nn.ModuleList([pipeline.projector, pipeline.lm])


def _lr_factor(step: int, steps: int) -> float:
    warmup = max(1, int(_WARMUP * steps))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _batches(images: np.ndarray, size: int, steps: int, rng: np.random.Generator):
    """`steps` batches of images, going through shuffled epochs."""
    order, at = rng.permutation(images), 0
    for _ in range(steps):
        if at + size > len(order):
            order, at = np.concatenate([order[at:], rng.permutation(images)]), 0
        yield order[at:at + size]
        at += size


def _loss(pipeline: MllmPipeline, x: Visual, sequences: list[_Sequence]) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens (and eos) of the sequences."""
    # Captions are two to three times longer than one-word answers: padded together, half
    # the text positions would be padding, which costs more than a second visual prefix.
    total, count = torch.zeros((), device=pipeline.mean.device), 0
    for captions in (True, False):
        bucket = [seq for seq in sequences if (seq.question.kind == "caption") == captions]
        if bucket:
            nll, n = _answer_nll(pipeline, x, bucket)
            total, count = total + nll, count + n
    return total / count


def _answer_nll(pipeline: MllmPipeline, x: Visual, sequences: list[_Sequence]
                ) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the answer tokens of the sequences, and their number."""
    images = sorted({seq.question.image for seq in sequences})
    row = {image: i for i, image in enumerate(images)}
    ids = _pad([seq.ids for seq in sequences], pipeline.tokenizer.pad_token_id or 0)
    labels = torch.full_like(ids, _IGNORE)
    for i, seq in enumerate(sequences):
        start, stop = len(seq.question.prompt), len(seq.ids)
        labels[i, start:stop] = ids[i, start:stop]
    device = pipeline.mean.device
    cache = _visual_prefix(pipeline, x[images].to(device))
    cache.batch_select_indices(torch.tensor([row[seq.question.image] for seq in sequences],
                                            device=device))
    # Right padding needs no attention mask: causal attention never lets a real token see
    # the padding after it, and padded positions carry no loss.
    hidden = _hidden(pipeline, ids.to(device), cache)
    labels = labels[:, 1:].to(device)  # position t predicts token t + 1
    wanted = labels != _IGNORE
    logits = pipeline.lm.get_output_embeddings()(hidden[:, :-1][wanted])
    return F.cross_entropy(logits, labels[wanted], reduction="sum"), int(wanted.sum())


def _visual_prefix(pipeline: MllmPipeline, x: torch.Tensor) -> Any:
    """The LM's key/value cache after the projected tokens of the images `x`."""
    embeds = pipeline.projector((x - pipeline.mean) / pipeline.std)
    return pipeline.lm.base_model(inputs_embeds=embeds, use_cache=True).past_key_values


def _hidden(pipeline: MllmPipeline, ids: torch.Tensor, cache: Any) -> torch.Tensor:
    """Last hidden states of `ids` following the cached prefix (the cache grows by them)."""
    return pipeline.lm.base_model(input_ids=ids, past_key_values=cache,
                                  use_cache=True).last_hidden_state


# --- decoding --------------------------------------------------------------------------------

def _answer_chunk(pipeline: MllmPipeline, x: torch.Tensor, first_image: int,
                  encoded: list[_Encoded], positions: list[int], max_new_tokens: int,
                  answers: list[str]) -> None:
    """Answer the questions about one chunk of images into `answers[positions]`."""
    device = pipeline.mean.device
    prefix = _visual_prefix(pipeline, x.to(device))
    by_length: dict[int, list[int]] = {}
    for i, q in enumerate(encoded):
        by_length.setdefault(len(q.prompt), []).append(i)
    for group in by_length.values():
        cache = copy.deepcopy(prefix)  # each group extends its own copy of the prefix
        rows = torch.tensor([encoded[i].image - first_image for i in group], device=device)
        cache.batch_select_indices(rows)
        prompts = torch.tensor([encoded[i].prompt for i in group], device=device)
        generated = _greedy(pipeline, prompts, cache, max_new_tokens)
        for i, ids in zip(group, generated, strict=True):
            answers[positions[i]] = pipeline.tokenizer.decode(ids, skip_special_tokens=True
                                                              ).strip()


def _greedy(pipeline: MllmPipeline, prompts: torch.Tensor, cache: Any, max_new_tokens: int
            ) -> list[list[int]]:
    """Greedy continuations of same-length prompts, each cut before its eos."""
    head, eos = pipeline.lm.get_output_embeddings(), pipeline.tokenizer.eos_token_id
    hidden = _hidden(pipeline, prompts, cache)[:, -1]
    steps: list[torch.Tensor] = []
    done = torch.zeros(len(prompts), dtype=torch.bool, device=prompts.device)
    for _ in range(max_new_tokens):
        token = head(hidden).argmax(-1)
        steps.append(token)
        done |= token == eos
        if done.all():
            break
        hidden = _hidden(pipeline, token[:, None], cache)[:, -1]
    out = torch.stack(steps, 1).tolist() if steps else [[] for _ in range(len(prompts))]
    return [row[:row.index(eos)] if eos in row else row for row in out]
