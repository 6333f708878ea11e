"""Verification through labels alone (`protocol="ingrain_labels"` and `"ingrain_errors"`, `hf_ingrain.verification.label_only`):
what is sent, what is counted, and what is refused. Their false-positive check on ten independent models is in
`test_false_positives.py`."""

import pytest
import torch
from conftest import NUM_LABELS, image_pipeline, local_tokenizer, tiny_bert, tiny_cnn

from hf_ingrain import WatermarkKey, verify
from hf_ingrain.verification.label_only import degrade


class LabelEndpoint:
    """A deployed model that answers with labels only, and counts the images it was sent."""

    def __init__(self, model):
        self.model, self.sent = model.eval(), 0

    def __call__(self, batch):
        self.sent += len(batch["pixel_values"])
        with torch.no_grad():
            return self.model(pixel_values=batch["pixel_values"]).logits.argmax(-1)


def test_the_ladders_degrade_within_the_models_range():
    pixels = torch.rand((2, 3, 28, 28), generator=torch.Generator().manual_seed(0))
    low, high = torch.tensor([-1.0, -2.0, 0.0]), torch.tensor([1.0, 2.0, 1.0])
    occluded = degrade(pixels, "occlusion", 0.5, low, high)
    assert torch.equal(occluded[:, :, 7:21, 7:21], low.view(1, 3, 1, 1).expand(2, 3, 14, 14))  # the central half
    assert torch.equal(occluded[:, :, :7], pixels[:, :, :7])  # the rest untouched
    assert torch.equal(degrade(pixels, "blend", 1.0, low, high), ((low + high) / 2).view(1, 3, 1, 1).expand(2, 3, 28, 28))
    pattern = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(1))
    noisy = degrade(pixels, "noise", 0.25, low, high, pattern)
    assert torch.allclose(noisy - pixels, 0.25 * (high - low).view(1, 3, 1, 1) * pattern, atol=1e-6)  # one line per input
    blurred = degrade(pixels, "blur", 0.5, low, high)
    assert blurred.std() < pixels.std() and abs(blurred.mean() - pixels.mean()) < 0.01


def test_a_label_only_endpoint_is_verified_within_its_query_budget(small_key, embedded_splits):
    test = embedded_splits["test"]
    endpoint = LabelEndpoint(tiny_cnn(seed=3))
    with pytest.raises(ValueError, match="only its top class"):  # the runner-up test cannot read labels
        verify(endpoint, small_key, test)
    endpoint.sent = 0
    result = verify(endpoint, small_key, test, protocol="ingrain_labels", max_queries=700)
    details = result.details
    assert endpoint.sent == details["queries_sent"] <= 700  # what the suspect was sent, each rung a query
    assert details["inputs_used"] < len(test) and details["scores"] == "labels"
    routes = details["compared_by_route"]
    assert result.num_queries == routes["ladder"] + routes["errors"] == details["inputs_used"] - details["unanswered"]
    assert result.protocol == "ingrain_labels" and 0 <= result.agreement <= 1 and result.null_rate >= 1 / 9
    assert set(details["null_rate_terms"]) <= {"ladder", "errors"}
    # the error route alone: one query per input, only the inputs it gets wrong are compared
    endpoint.sent = 0
    errors = verify(endpoint, small_key, test, protocol="ingrain_errors")
    assert endpoint.sent == len(test) and errors.details["compared_by_route"]["ladder"] == 0
    assert errors.num_queries == errors.details["compared_by_route"]["errors"] > 0  # an untrained model errs a lot


def test_a_pipeline_that_answers_with_its_top_label_and_score_is_verified_through_labels(small_key, embedded_splits):
    # A deployed model behind `pipeline(..., top_k=1)`: one label and its score per image, so no runner-up to read.
    test = embedded_splits["test"].select(range(400))
    pipe = image_pipeline(small_key.ingrainer)
    with pytest.raises(ValueError, match="only its top class"):
        verify(pipe, small_key, test, top_k=1)
    calls = type(pipe.image_processor).calls
    errors = verify(pipe, small_key, test, top_k=1, protocol="ingrain_errors")
    assert type(pipe.image_processor).calls - calls == errors.details["queries_sent"] == len(test)  # one image each
    # the ingrainer's wrong label is, by definition, its own best class other than the truth: the key's choice
    assert errors.num_queries > 0 and errors.agreement == 1.0 and errors.verified
    calls = type(pipe.image_processor).calls
    ladder = verify(pipe, small_key, test, top_k=1, protocol="ingrain_labels", max_queries=300)
    assert type(pipe.image_processor).calls - calls == ladder.details["queries_sent"] <= 300  # every rung was sent
    assert ladder.details["scores"] == "labels" and ladder.num_queries > 0
    assert not verify(image_pipeline(tiny_cnn(seed=4)), small_key, test, top_k=1, protocol="ingrain_errors").verified


def test_label_only_protocols_refuse_what_they_cannot_do_before_any_query(small_key, embedded_splits):
    test = embedded_splits["test"]
    endpoint = LabelEndpoint(tiny_cnn(seed=3))
    with pytest.raises(ValueError, match="Unknown ladder 'pixelate'"):
        verify(endpoint, small_key, test, protocol="ingrain_labels", ladder="pixelate")
    with pytest.raises(ValueError, match="max_queries"):
        verify(endpoint, small_key, test, protocol="ingrain_labels", max_queries=0)
    with pytest.raises(ValueError, match="need a `labels` column"):
        verify(endpoint, small_key, test.remove_columns("labels"), protocol="ingrain_errors")
    tokenizer = local_tokenizer()
    text_key = WatermarkKey.generate_for(tiny_bert(vocab_size=tokenizer.vocab_size), tokenizer, num_carriers=5, seed=0)
    with pytest.raises(ValueError, match="degrade images"):
        verify(tiny_bert(vocab_size=tokenizer.vocab_size), text_key, test, protocol="ingrain_labels")
    assert endpoint.sent == 0
    assert NUM_LABELS == small_key.num_labels


def test_a_budget_that_meets_no_error_is_no_evidence_not_an_error(small_key, embedded_splits):
    # Labels equal to the suspect's own answers: it never errs, so the error route compares nothing.
    suspect = tiny_cnn(seed=3).eval()
    test = embedded_splits["test"].select(range(64))
    with torch.no_grad():
        answers = suspect(pixel_values=test[:]["pixel_values"]).logits.argmax(-1)
    agreeing = test.remove_columns("labels").add_column("labels", answers.tolist()).with_format("torch")
    result = verify(suspect, small_key, agreeing, protocol="ingrain_errors", max_queries=40)
    assert not result.verified and result.p_value == 1.0 and result.num_queries == 0
    assert result.details["inputs_used"] == result.details["queries_sent"] == 40
    assert str(result).startswith("not verified (ingrain_errors): no query compared, no evidence")
