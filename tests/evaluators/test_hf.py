"""The transformers backend against hand-computed references (unbatched, no KV cache)."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from evaluators.hf import HFCausalLM, HFEncoder, HFEvaluator
from evaluators.items import Item
from evaluators.scoring import cut_at_stop, extract_answer
from evaluators.tasks import load_task


def _manual_greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding by hand: full forward each step, argmax, stop at EOS."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=torch.tensor([ids + new])).logits[0, -1]
            token = int(logits.argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("name", ["gpt2_a", "llama"])
def test_generative_matches_manual_greedy(models, tasks, name) -> None:
    items = load_task(tasks["arith_gen"], limit=12).items
    evaluator = HFCausalLM(models[name], batch_size=5)  # 12 items: uneven batches, padding
    results = evaluator.evaluate(items)
    model = AutoModelForCausalLM.from_pretrained(str(models[name])).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(models[name]))
    generations = set()
    for item, result in zip(items, results):
        text = cut_at_stop(_manual_greedy(model, tokenizer, item.prompt, 6), ["\n"])
        assert result.details["generation"] == text, item.id
        expected = extract_answer(text, r"(-?\d+)")
        assert result.prediction == expected
        assert result.score == float(expected is not None and expected == item.target)
        generations.add(text)
    assert len(generations) > 3, "the tiny model should answer differently per prompt"


def test_generative_exact_match_scores_one_when_target_is_the_answer(models) -> None:
    """Hand-made items whose target is (or is not) the model's greedy answer."""
    model = AutoModelForCausalLM.from_pretrained(str(models["gpt2_a"])).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(models["gpt2_a"]))
    from evaluators.items import GenerationSpec

    spec = GenerationSpec(max_new_tokens=4, stop=(), answer_regex=None)
    answer = _manual_greedy(model, tokenizer, "Q: 2+2=? A:", 4).strip()
    right = Item("hand", "r", "generative", "Q: 2+2=? A:", answer, generation=spec,
                 metric="exact_match")
    wrong = Item("hand", "w", "generative", "Q: 2+2=? A:", answer + "x", generation=spec,
                 metric="exact_match")
    scores = [r.score for r in HFCausalLM(models["gpt2_a"]).evaluate([right, wrong])]
    assert scores == [1.0, 0.0]


def test_multiple_choice_matches_manual_loglikelihoods(models, tasks) -> None:
    items = load_task(tasks["arith_mc"], limit=10).items
    results = HFCausalLM(models["gpt2_a"], batch_size=7).evaluate(items)
    model = AutoModelForCausalLM.from_pretrained(str(models["gpt2_a"])).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(models["gpt2_a"]))
    n_acc = 0
    for item, result in zip(items, results):
        lls = []
        for choice in item.choices:
            ctx = tokenizer(item.prompt, add_special_tokens=False)["input_ids"]
            cont = tokenizer(choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ctx + cont])).logits[0]
            logprobs = torch.log_softmax(logits, dim=-1)
            lls.append(sum(float(logprobs[len(ctx) + k - 1, t]) for k, t in enumerate(cont)))
        assert result.details["loglikelihoods"] == pytest.approx(lls, abs=1e-4)
        best = max(range(len(lls)), key=lambda i: lls[i])
        # lm-eval's acc_norm: per character of the choice, without the target delimiter
        assert item.choices == tuple(" " + c for c in item.choice_texts)
        best_norm = max(range(len(lls)), key=lambda i: lls[i] / len(item.choice_texts[i]))
        assert result.metrics["acc"] == float(best == item.target)
        assert result.metrics["acc_norm"] == float(best_norm == item.target)
        assert result.score == result.metrics["acc"] and result.prediction == best
        n_acc += best == item.target
    assert 0 < n_acc < len(items) or len(items) < 5


def test_classification_matches_manual_head(models, tasks) -> None:
    items = load_task(tasks["topic"]).items
    evaluator = HFEvaluator(models["encoder"], batch_size=8)
    assert isinstance(evaluator, HFEncoder)
    results = evaluator.evaluate(items)
    encoder = AutoModel.from_pretrained(str(models["encoder"])).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(models["encoder"]))
    with safe_open(str(models["encoder"] / "heads" / "topic.safetensors"), "pt") as f:
        weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    predictions = []
    for item, result in zip(items, results):
        batch = tokenizer(item.prompt, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**batch).last_hidden_state[0]
        logits = hidden.mean(dim=0) @ weight.T + bias  # one text: no padding to mask
        assert result.details["logits"] == pytest.approx(logits.tolist(), abs=1e-4)
        predicted = int(logits.argmax())
        assert result.score == float(predicted == item.target)
        assert result.prediction == ["math", "prose"][predicted]
        predictions.append(predicted)
    assert len(set(predictions)) == 2, "the random head should use both classes"


def test_batch_size_does_not_change_answers(models, tasks) -> None:
    items = load_task(tasks["arith_gen"], limit=9).items + load_task(tasks["arith_mc"],
                                                                     limit=9).items
    one = HFCausalLM(models["llama"], batch_size=1).evaluate(items)
    many = HFCausalLM(models["llama"], batch_size=16).evaluate(items)
    assert [r.prediction for r in one] == [r.prediction for r in many]
    for a, b in zip(one, many):
        assert a.details.get("loglikelihoods", [0]) == pytest.approx(
            b.details.get("loglikelihoods", [0]), abs=1e-5)
