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


def test_special_tokens_are_added_as_lm_eval_adds_them(models, tmp_path) -> None:
    from evaluators.requests import encode_text, generation_prompt, loglikelihood_requests
    from tests.evaluators.lm_eval_setting import add_bos_tokenizer

    bos_dir = add_bos_tokenizer(models["llama"], tmp_path / "llama_bos")
    tokenizer = AutoTokenizer.from_pretrained(str(bos_dir))
    plain = AutoTokenizer.from_pretrained(str(models["gpt2_a"]))
    assert encode_text(tokenizer, "ab") == [256, 97, 98]
    assert encode_text(tokenizer, "<|endoftext|>ab") == [256, 97, 98]  # not a second BOS
    assert encode_text(tokenizer, "ab", add_bos_token=False) == [97, 98]
    assert encode_text(plain, "ab") == [97, 98]  # a tokenizer that adds nothing
    [with_context, empty] = loglikelihood_requests(tokenizer, [("Q: 1 ", [" 2"]), ("", ["x"])],
                                                   max_length=64)
    # trailing space of the context moves into the continuation; BOS before the context
    assert with_context.context == (256, 81, 58, 32, 49) and with_context.continuation == (
        32, 32, 50)
    assert empty.context == (256,) and empty.continuation == (120,)
    assert generation_prompt(tokenizer, "Q:", 64, 8) == [256, 81, 58]


def test_max_length_cuts_contexts_as_lm_eval(models, tasks) -> None:
    from evaluators.errors import EvaluatorError

    item = load_task(tasks["arith_mc"], limit=1).items[0]
    long_item = Item(item.task, "long", "multiple_choice", "x" * 40 + item.prompt, item.target,
                     choices=item.choices, choice_texts=item.choice_texts)
    result = HFCausalLM(models["gpt2_a"], max_length=12).evaluate([long_item])[0]
    model = AutoModelForCausalLM.from_pretrained(str(models["gpt2_a"])).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(models["gpt2_a"]))
    expected = []
    for choice in long_item.choices:
        ctx = tokenizer(long_item.prompt)["input_ids"]
        cont = tokenizer(choice)["input_ids"]
        seq = (ctx + cont)[-13:]  # lm-eval: (context + continuation)[-(max_length + 1):]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([seq[:-1]])).logits[0], -1)
        expected.append(sum(float(logprobs[len(seq) - len(cont) - 1 + k, t])
                            for k, t in enumerate(cont)))
    assert result.details["loglikelihoods"] == pytest.approx(expected, abs=1e-4)
    with pytest.raises(EvaluatorError, match=r"--max-length 5000 does not fit .* window is "):
        HFCausalLM(models["gpt2_a"], max_length=5000)


def test_encoder_max_length_truncates_inputs(models, tasks) -> None:
    from evaluators.errors import EvaluatorError

    item = load_task(tasks["topic"], limit=1).items[0]
    default = HFEncoder(models["encoder"]).evaluate([item])[0].details["logits"]
    short = HFEncoder(models["encoder"], max_length=3).evaluate([item])[0].details["logits"]
    assert short != pytest.approx(default, abs=1e-4)
    with pytest.raises(EvaluatorError, match="window is 128 tokens"):  # the tiny BERT's
        HFEncoder(models["encoder"], max_length=129)
