"""The visual-tokenizer (multimodal-LLM) protocol: question sets against the dataset's labels,
metrics against pycocoevalcap and written-out formulas, the shared-prefix training loss and
cached greedy decoding against plain full-sequence forwards, and learning against the blind
(zeroed-token) control."""

from __future__ import annotations

import dataclasses
import string

import numpy as np
import pytest
import torch

from vitbench.data.embedded import KINDS, ShapesDataset
from vitbench.data.questions import Question, shapes_questions
from vitbench.errors import VitbenchError
from vitbench.evals.protocols import mllm
from vitbench.evals.protocols.mllm import (
    MllmSettings,
    answer_questions,
    caption_scores,
    mllm_evaluate,
    score_answers,
    train_mllm,
    vqa_soft_accuracy,
)

QUICK = MllmSettings(stage1_steps=2, stage2_steps=2, batch_size=8)


# ---- question sets ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes():
    return ShapesDataset("train", n_images=300)


def _asked_kind(prompt: str) -> str:
    """The kind a counting / identification prompt names, matched against KINDS."""
    words = prompt.lower().rstrip("?").split()
    return next(k for k in KINDS for w in words if w in (k, k + "s", k + "es"))


def test_counting_and_identification_answers_are_the_datasets_labels(shapes):
    questions = shapes_questions(shapes)
    oc = [q for q in questions if q.kind == "oc"]
    mci = [q for q in questions if q.kind == "mci"]
    assert len(oc) == len(mci) == 2 * len(shapes)
    for q in oc:
        assert q.answers == (str(shapes.counts[q.image, KINDS.index(_asked_kind(q.prompt))]),)
    for q in mci:
        present = shapes.presence[q.image, KINDS.index(_asked_kind(q.prompt))]
        assert q.answers == ("yes" if present else "no",)
    # one present and one absent kind per image: balanced, and counts are not all > 0
    for image in range(len(shapes)):
        assert sorted(q.answers[0] for q in mci if q.image == image) == ["no", "yes"]
        assert sum(q.answers == ("0",) for q in oc if q.image == image) == 1


def test_captions_and_attribute_answers_come_from_the_scene(shapes):
    questions = shapes_questions(shapes)
    assert len(questions) == 8 * len(shapes)
    for q in questions[:80]:
        scene = shapes.scene(q.image)
        if q.kind == "caption":
            assert q.answers == tuple(shapes.captions[q.image])
        elif q.kind == "vqa":
            expected = {"colour": scene.main.colour, "shape": scene.main.kind,
                        "background": scene.background}
            assert q.answers == (next(v for k, v in expected.items() if k in q.prompt),)
        if q.kind != "caption":
            assert len(q.answers) == 1 and " " not in q.answers[0]


def test_questions_are_deterministic_and_a_subset_is_a_prefix(shapes):
    questions = shapes_questions(shapes)
    assert shapes_questions(ShapesDataset("train", n_images=300)) == questions
    assert shapes_questions(ShapesDataset("train", n_images=50)) == questions[:8 * 50]


# ---- metrics ------------------------------------------------------------------------------

def _normalise(text: str) -> str:
    """Lowercase and punctuation removed, as COCO's PTBTokenizer would leave it."""
    table = str.maketrans(string.punctuation, " " * len(string.punctuation))
    return " ".join(text.lower().translate(table).split())


def test_caption_scores_equal_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    references = [("A red circle.", "a circle that is red", "one red circle"),
                  ("Two blue squares, next to a cross", "a cross and two blue squares",
                   "a picture of three shapes"),
                  ("a large green triangle", "a green triangle on a dark background",
                   "a picture of a single triangle")]
    candidates = ["A red circle", "two blue squares and a cross!", "a small green triangle"]
    gts = {i: [_normalise(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [_normalise(c)] for i, c in enumerate(candidates)}
    cider, per_image = Cider().compute_score(gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)

    ours = caption_scores(references, candidates)
    assert ours[0] == pytest.approx(100 * cider)
    assert ours[1] == pytest.approx(100 * bleu[3])
    np.testing.assert_allclose(ours[2], 100 * np.asarray(per_image))
    questions = [Question(i, "caption", "Describe the image.", refs)
                 for i, refs in enumerate(references)]
    scores = score_answers(questions, candidates)
    assert scores.caption_cider == pytest.approx(100 * cider)
    assert scores.caption_bleu4 == pytest.approx(100 * bleu[3])


def test_vqa_soft_accuracy_is_min_of_count_over_three():
    humans = ["yes"] * 2 + ["no"] * 7 + ["Maybe"]
    for prediction in ("yes", "no", "maybe", "Yes.", "perhaps"):
        said = sum(_normalise(h) == _normalise(prediction) for h in humans)
        assert vqa_soft_accuracy(prediction, humans) == pytest.approx(min(said / 3, 1))
    assert vqa_soft_accuracy("Yes.", humans) == pytest.approx(2 / 3)


def test_vqa_accuracy_is_soft_with_ten_references_and_exact_with_one():
    humans = ("yes",) * 2 + ("no",) * 7 + ("maybe",)
    questions = [Question(0, "vqa", "Is it?", humans)] * 3 + [
        Question(0, "vqa", "What colour is the large shape?", ("red",))] * 2
    predictions = ["yes", "no", "maybe", "Red", "blue"]
    scores = score_answers(questions, predictions)
    np.testing.assert_allclose(scores.hits.vqa, [2 / 3, 1, 1 / 3, 1, 0])
    assert scores.vqa_acc == pytest.approx(100 * (2 / 3 + 1 + 1 / 3 + 1) / 5)


def test_counting_accuracy_mae_rmse_equal_numpy():
    truth = [0, 1, 2, 3, 1, 2]
    predictions = ["0", "2", "two", "many", " 3 ", "1"]  # "many": unparseable, counted as 0
    questions = [Question(i, "oc", "How many circles are there in the image?", (str(t),))
                 for i, t in enumerate(truth)]
    scores = score_answers(questions, predictions)
    predicted = np.array([0, 2, 2, 0, 3, 1])
    error = predicted - np.array(truth)
    assert scores.oc_acc == pytest.approx(100 * np.mean(predicted == truth))
    assert scores.oc_mae == pytest.approx(np.mean(np.abs(error)))
    assert scores.oc_rmse == pytest.approx(np.sqrt(np.mean(error ** 2)))
    np.testing.assert_array_equal(scores.hits.oc_error, error)
    assert np.isnan(scores.caption_cider) and np.isnan(scores.mci_acc)


def test_vqa_and_mci_accuracy_are_normalised_exact_match():
    questions = [Question(0, "vqa", "What colour is the large shape?", ("red",)),
                 Question(0, "vqa", "Is the background dark or light?", ("dark",)),
                 Question(0, "mci", "Does a circle exist in the image?", ("yes",)),
                 Question(0, "mci", "Does a cross exist in the image?", ("no",))]
    scores = score_answers(questions, ["Red.", "dark grey", "yes", "yes"])
    np.testing.assert_array_equal(scores.hits.vqa, [1, 0])
    np.testing.assert_array_equal(scores.hits.mci, [1, 0])
    assert scores.vqa_acc == 50 and scores.mci_acc == 50


# ---- the pipeline's mechanics -------------------------------------------------------------

COLOURS = ("red", "green", "blue")


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, list[Question]]:
    """Noise tokens with each answer added linearly (a +3 along one direction): presence in
    token 0, colour in token 1, count in token 2. Presence alternates, so MCI is balanced."""
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(n, 4, 8)).astype(np.float32)
    questions = []
    for i in range(n):
        yes, colour, count = i % 2 == 0, int(rng.integers(3)), int(rng.integers(4))
        tokens[i, 0, 0] += 3 if yes else -3
        tokens[i, 1, 1 + colour] += 3
        tokens[i, 2, 4 + count] += 3
        questions += [
            Question(i, "caption", "Describe the image.", (f"a {COLOURS[colour]} picture",)),
            Question(i, "mci", "Does a circle exist in the image?", ("yes" if yes else "no",)),
            Question(i, "vqa", "What colour is the large shape?", (COLOURS[colour],)),
            Question(i, "oc", "How many circles are there in the image?", (str(count),))]
    return tokens, questions


def test_shared_prefix_loss_equals_full_sequences():
    """The training loss (one visual prefix per image, its cache indexed per question) equals
    the answer-token cross-entropy of each full sequence run through the LM on its own."""
    tokens, questions = _synthetic(6, 0)
    pipeline = train_mllm(tokens, questions, MllmSettings(stage1_steps=0, stage2_steps=0))
    encoded = mllm._encode(pipeline.tokenizer, questions)
    sequences = [mllm._Sequence(q, a) for q in encoded for a in q.answers]
    x = torch.from_numpy(tokens)
    with torch.no_grad():
        ours = mllm._loss(pipeline, x, sequences)
        total, count = 0.0, 0
        for seq in sequences:
            visual = pipeline.projector((x[seq.question.image:seq.question.image + 1]
                                         - pipeline.mean) / pipeline.std)
            text = pipeline.lm.get_input_embeddings()(torch.tensor([seq.ids]))
            logits = pipeline.lm(inputs_embeds=torch.cat([visual, text], 1)).logits[0]
            start = visual.shape[1] + len(seq.question.prompt)
            targets = torch.tensor(seq.answer)
            total += torch.nn.functional.cross_entropy(
                logits[start - 1:start - 1 + len(targets)], targets, reduction="sum").item()
            count += len(targets)
    assert ours.item() == pytest.approx(total / count, rel=1e-5)


def test_cached_greedy_decoding_equals_plain_greedy_loop():
    tokens, questions = _synthetic(40, 0)
    pipeline = train_mllm(tokens, questions, QUICK)
    answers = answer_questions(pipeline, tokens, questions[:12], max_new_tokens=5)
    eos = pipeline.tokenizer.eos_token_id
    x = torch.from_numpy(tokens)
    with torch.no_grad():
        for q, answer in zip(questions[:12], answers, strict=True):
            visual = pipeline.projector((x[q.image:q.image + 1] - pipeline.mean) / pipeline.std)
            ids = mllm._encode(pipeline.tokenizer, [q], with_answers=False)[0].prompt
            generated: list[int] = []
            for _ in range(5):
                text = pipeline.lm.get_input_embeddings()(torch.tensor([ids + tuple(generated)]))
                logits = pipeline.lm(inputs_embeds=torch.cat([visual, text], 1)).logits
                token = int(logits[0, -1].argmax())
                if token == eos:
                    break
                generated.append(token)
            assert answer == pipeline.tokenizer.decode(generated, skip_special_tokens=True).strip()


@pytest.mark.parametrize("projector, visual", [("linear", 4), ("mlp", 4),
                                               ("perceiver", mllm.PERCEIVER_LATENTS)])
def test_each_projector_runs(projector, visual):
    tokens, questions = _synthetic(16, 0)
    pipeline = train_mllm(tokens, questions, MllmSettings(projector=projector, stage1_steps=1,
                                                          stage2_steps=1, batch_size=8))
    assert pipeline.projector(torch.from_numpy(tokens[:3])).shape == (3, visual, 128)
    answers = answer_questions(pipeline, tokens, questions, max_new_tokens=3)
    assert len(answers) == len(questions) and all(isinstance(a, str) for a in answers)


def test_same_inputs_give_same_scores():
    tokens, questions = _synthetic(24, 0)
    first = mllm_evaluate(tokens[:16], [q for q in questions if q.image < 16],
                          tokens[16:], [Question(q.image - 16, q.kind, q.prompt, q.answers)
                                        for q in questions if q.image >= 16], QUICK)
    second = mllm_evaluate(tokens[:16], [q for q in questions if q.image < 16],
                           tokens[16:], [Question(q.image - 16, q.kind, q.prompt, q.answers)
                                         for q in questions if q.image >= 16], QUICK)
    assert first.predictions == second.predictions
    assert (first.vqa_acc, first.caption_cider) == (second.vqa_acc, second.caption_cider)


def test_bad_inputs_raise_one_line_errors():
    tokens, questions = _synthetic(8, 0)
    bad = [
        (dict(train_tokens=tokens[0]), "tokens, dim"),
        (dict(train_questions=[Question(8, "vqa", "?", ("a",))]), "outside the 8 rows"),
        (dict(train_questions=[Question(0, "riddle", "?", ("a",))]), "unknown kind"),
        (dict(eval_tokens=tokens[:, :3]), "one encoder"),
        (dict(settings=MllmSettings(projector="qformer")), "unknown projector"),
        (dict(settings=MllmSettings(stage2_steps=-1)), "steps must be"),
        (dict(train_questions=[q for q in questions if q.kind != "caption"]), "stage1_steps=0"),
        (dict(settings=MllmSettings(language_model="/nonexistent/lm", stage1_steps=0)),
         "cannot load language model"),
    ]
    for change, message in bad:
        args = dict(train_tokens=tokens, train_questions=questions, eval_tokens=tokens,
                    eval_questions=questions, settings=QUICK) | change
        with pytest.raises(VitbenchError, match=message) as caught:
            mllm_evaluate(**args)
        assert "\n" not in str(caught.value)


# ---- learning -----------------------------------------------------------------------------

def test_learns_far_above_the_blind_control():
    """With the answers linearly in the tokens, the trained pipeline answers nearly all;
    with zeroed tokens every image looks the same, so each prompt gets one answer, and the
    score is that answer's share of the eval set (MCI: exactly half)."""
    (train, train_q), (test, test_q) = _synthetic(400, 0), _synthetic(200, 1)
    train_q, test_q = ([q for q in qs if q.kind != "caption"] for qs in (train_q, test_q))
    settings = MllmSettings(stage1_steps=0, stage2_steps=80)
    real = mllm_evaluate(train, train_q, test, test_q, settings)
    blind = mllm_evaluate(np.zeros_like(train), train_q, np.zeros_like(test), test_q, settings)
    assert real.mci_acc >= 95 and real.vqa_acc >= 85 and real.oc_acc >= 70
    assert blind.mci_acc == 50
    for kind in ("vqa", "oc"):
        said = {p for q, p in zip(test_q, blind.predictions, strict=True) if q.kind == kind}
        assert len(said) == 1
        truth = [q.answers[0] for q in test_q if q.kind == kind]
        share = 100 * truth.count(said.pop()) / len(truth)
        assert getattr(blind, f"{kind}_acc") == pytest.approx(share)
        assert getattr(real, f"{kind}_acc") > share + 40
    assert real.oc_mae < blind.oc_mae / 2


# ---- joint tuning -------------------------------------------------------------------------

def test_joint_tuning_trains_the_encoder_in_stage_2_only():
    import vitbench
    from vitbench.evals.protocols.mllm import TunedTokens

    encoder = vitbench.load("vit_pico", pretrained=False, resolution=16)
    pixels = torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tokens = TunedTokens(encoder, lambda rows: pixels[rows], encoder.encode_image(pixels).tokens)
    # before tuning, the computed tokens are the encoder's own
    torch.testing.assert_close(tokens[[3, 5]], encoder.encode_image(pixels[[3, 5]]).tokens)
    assert tokens.shape == (12, *encoder.encode_image(pixels[:1]).tokens.shape[1:])
    questions = _synthetic(12, 0)[1]

    def weights():
        return [p.detach().clone() for p in tokens.parameters()]

    def train(**settings):
        start = weights()
        train_mllm(tokens, questions, MllmSettings(batch_size=8, **settings))
        assert not tokens.tuning  # back to frozen, decoding runs without gradients
        return all(torch.equal(a, b) for a, b in zip(start, weights(), strict=True))

    assert train(stage1_steps=2, stage2_steps=0)  # stage 1 aligns the projector only
    assert train(stage1_steps=0, stage2_steps=2, encoder_lr_scale=0.0)
    assert not train(stage1_steps=0, stage2_steps=2)


# ---- a pretrained language model ----------------------------------------------------------

def test_pretrained_lm_by_path_stays_frozen_while_the_projector_trains(tmp_path):
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    tokens, questions = _synthetic(32, 0)
    tokenizer = mllm.word_tokenizer(questions)  # any tokenizer saved beside the model
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32,
                               n_layer=1, n_head=2)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    settings = MllmSettings(language_model=str(tmp_path), stage1_steps=3, stage2_steps=3,
                            batch_size=8, max_new_tokens=3)

    untrained = train_mllm(tokens, questions,
                           dataclasses.replace(settings, stage1_steps=0, stage2_steps=0))
    trained = train_mllm(tokens, questions, settings)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path).state_dict()
    assert trained.lm.state_dict().keys() == saved.keys()
    for name, value in trained.lm.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    assert not any(p.requires_grad for p in trained.lm.parameters())
    before, after = untrained.projector.state_dict(), trained.projector.state_dict()
    assert all(not torch.equal(before[name], after[name]) for name in before)
    scores = mllm_evaluate(tokens, questions, tokens, questions, settings)
    assert len(scores.predictions) == len(questions)
