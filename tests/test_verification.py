import copy
import logging
import math

import pytest
import torch
from conftest import NUM_LABELS, image_pipeline, tiny_cnn
from trained_models import single_thread  # noqa: F401 (autouse fixture: this module runs on one thread)

from hf_ingrain import verify
from hf_ingrain.verification.statistics import runner_up
from hf_ingrain.verification.calibration import calibrate_null
from hf_ingrain.suspects import as_score_matrix, collect_scores, resolve_model, score_kind
from hf_ingrain.verification import binomial_p_value, ingrain_null_rate, ingrain_queries, ingrain_statistics


@pytest.fixture(scope="module")
def queries(embedded_splits):
    return embedded_splits["test"].select(range(300))


def logits_of(model):
    return lambda batch: model(pixel_values=batch["pixel_values"]).logits


# ----------------------------------------------------------------------------------------------- score formats
def test_as_score_matrix_reads_every_format():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(as_score_matrix(logits), logits) and score_kind(logits) == "logits"
    assert score_kind(as_score_matrix(logits.softmax(-1))) == "probabilities"
    top2 = as_score_matrix(logits.softmax(-1).topk(2), num_labels=5)
    assert score_kind(top2) == "top_k" and (torch.isfinite(top2).sum(-1) == 2).all()
    assert torch.equal(top2.argmax(-1), logits.argmax(-1)) and torch.equal(runner_up(top2), runner_up(logits))
    labels = as_score_matrix(logits.argmax(-1), num_labels=5)
    assert score_kind(labels) == "labels" and torch.equal(labels.argmax(-1), logits.argmax(-1))
    with_nan = logits.clone()
    with_nan[:, 0] = math.nan
    assert score_kind(as_score_matrix(with_nan)) == "top_k" and (as_score_matrix(with_nan)[:, 0] == -math.inf).all()
    served = [[{"label": "b", "score": 0.7}, {"label": "unknown", "score": 0.2}, {"label": "a", "score": math.nan}]]
    row = as_score_matrix(served, num_labels=3, label_to_index={"a": 0, "b": 1, "c": 2})
    assert row[0, 1] == pytest.approx(0.7) and torch.isinf(row[0, [0, 2]]).all()


@pytest.mark.parametrize(
    "output, message",
    [(torch.tensor([0.5, 1.2]), "labels"), (torch.zeros(2, 3, 4), "shape"), (torch.tensor([1, 2]), "num_labels")],
)
def test_as_score_matrix_rejects_what_it_cannot_read(output, message):
    with pytest.raises(ValueError, match=message):
        as_score_matrix(output, num_labels=None if message == "num_labels" else 5)


# ----------------------------------------------------------------------------------------------- the null rate
def test_null_rate_bounds_models_whose_runner_up_follows_their_top_class_or_the_label():
    generator = torch.Generator().manual_seed(0)
    n = 3000
    ingrainer = torch.randn(n, NUM_LABELS, generator=generator)
    ingrainer[:, 3] += 1.0  # uneven choices: class 3 is the ingrainer's favourite
    labels = torch.randint(0, NUM_LABELS, (n,), generator=generator)

    def best_rule(groups, choices):  # the worst case of each class of models: it knows the ingrainer's choices
        table = {int(g): int(torch.bincount(choices[groups == g]).argmax()) for g in groups.unique()}
        return torch.tensor([table[int(g)] for g in groups])

    for top in (labels, torch.randint(0, NUM_LABELS, (n,), generator=generator)):  # accurate, then arbitrary
        choices = runner_up(ingrainer, top)
        null_rate, terms = ingrain_null_rate(ingrainer, top, labels)
        degenerate = {
            "constant": torch.where(top == 3, torch.full_like(top, 5), torch.full_like(top, 3)),
            "by top class": best_rule(top, choices),
        }
        if top is labels:
            degenerate["by label"] = best_rule(labels, runner_up(ingrainer, labels))
        for name, model_runner_up in degenerate.items():
            agreements = int((model_runner_up == choices).sum())
            assert agreements / n <= null_rate + 1e-12, name
            assert binomial_p_value(agreements, n, null_rate) > 0.4, name  # nowhere near alpha
        assert null_rate > 1 / (NUM_LABELS - 1)  # the uniform rate alone would have verified the constant model


def test_binomial_p_value_is_the_upper_tail():
    assert binomial_p_value(0, 10, 0.3) == 1.0 and binomial_p_value(3, 0, 0.5) == 1.0
    assert binomial_p_value(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_p_value(9, 10, 0.5) == pytest.approx(11 / 1024)


# ----------------------------------------------------------------------------------------------- access paths
def test_top_k_and_probability_suspects_give_the_full_logits_test(small_key, queries):
    ingrainer = small_key.ingrainer  # a suspect whose runner-up is exactly the ingrainer's choice
    full = verify(ingrainer, small_key, queries)
    assert full.verified and full.agreement == 1.0 and full.details["scores"] == "logits"
    softmax = lambda batch: logits_of(ingrainer)(batch).softmax(-1)  # noqa: E731
    top2 = lambda batch: logits_of(ingrainer)(batch).softmax(-1).topk(2)  # noqa: E731
    for suspect, kwargs, kind in [
        (softmax, {}, "probabilities"),
        (top2, {}, "top_k"),
        (ingrainer, {"scores": "top_k", "top_k": 2}, "top_k"),
    ]:
        result = verify(suspect, small_key, queries, **kwargs)
        assert result.details["scores"] == kind
        assert (result.num_agreements, result.null_rate, result.p_value) == (
            full.num_agreements,
            full.null_rate,
            full.p_value,
        )
    independent = verify(tiny_cnn(seed=5), small_key, queries, scores="top_k", top_k=2)
    assert not independent.verified


def test_label_only_suspects_work_with_the_carriers_protocol(small_key, queries):
    labels_only = lambda batch: logits_of(small_key.ingrainer)(batch).argmax(-1)  # noqa: E731
    result = verify(labels_only, small_key, protocol="carriers")
    assert result.verified and result.details["scores"] == "labels" and result.null_rate == pytest.approx(0.1)
    other = tiny_cnn(seed=3)
    assert not verify(lambda batch: logits_of(other)(batch).argmax(-1), small_key, protocol="carriers").verified
    assert verify(small_key.ingrainer, small_key, protocol="carriers", scores="labels").details["scores"] == "labels"
    with pytest.raises(ValueError, match="protocol='carriers'"):
        verify(labels_only, small_key, queries)  # no runner-up: the ingrain protocol cannot run
    with pytest.raises(ValueError, match="protocol='carriers'"):
        verify(small_key.ingrainer, small_key, queries, top_k=1)


def test_a_pipeline_is_queried_with_pil_images_and_its_top_k_lists_are_parsed(small_key, queries):
    model = copy.deepcopy(small_key.ingrainer)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    model.config.id2label = dict(enumerate(names))  # the pipeline reports label names, mapped back through the config
    model.config.label2id = {name: i for i, name in enumerate(names)}
    pipe = image_pipeline(model)
    calls = type(pipe.image_processor).calls
    scores, _ = collect_scores(pipe, queries.select(range(20)), num_labels=NUM_LABELS)
    assert type(pipe.image_processor).calls - calls == 20  # every query went through the pipeline's preprocessing
    assert score_kind(scores) == "top_k" and (torch.isfinite(scores).sum(-1) == 5).all()  # the pipeline's default
    expected = logits_of(model)(queries.select(range(20))[:]).softmax(-1)
    known = torch.isfinite(scores)
    assert torch.allclose(scores[known], expected[known], atol=1e-5)  # pixels survive the 8-bit round trip
    assert torch.equal(known, torch.zeros_like(known).scatter(-1, expected.topk(5).indices, True))

    result = verify(pipe, small_key, queries)
    assert result.verified and result.agreement == 1.0 and result.details["scores"] == "top_k"
    assert verify(image_pipeline(model), small_key, queries, top_k=2).agreement == 1.0
    assert not verify(image_pipeline(tiny_cnn(seed=4)), small_key, queries).verified


def test_a_pipeline_refuses_normalised_queries(small_key, queries):
    shifted = queries.map(lambda row: {"pixel_values": row["pixel_values"] - 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        verify(image_pipeline(small_key.ingrainer), small_key, shifted)


def test_a_local_folder_is_loaded_and_anything_else_is_refused(small_key, queries, tmp_path):
    small_key.ingrainer.save_pretrained(tmp_path / "suspect")
    assert verify(str(tmp_path / "suspect"), small_key, queries).verified
    with pytest.raises(ValueError, match="local folder"):
        resolve_model(str(tmp_path / "missing"))


def test_verify_checks_its_arguments_before_querying(small_key, queries):
    def never_called(batch):
        raise AssertionError("queried")

    for kwargs, message in [
        (dict(scores="everything"), "scores"),
        (dict(scores="top_k"), "top_k"),
        (dict(top_k=0), "top_k"),
        (dict(alpha=0), "alpha"),
        (dict(protocol="magic"), "protocol"),
        (dict(dataset=None), "benign queries"),
    ]:
        with pytest.raises(ValueError, match=message):
            verify(never_called, small_key, **{"dataset": queries, **kwargs})
    with pytest.raises(ValueError, match="labels"):
        verify(tiny_cnn(num_labels=5), small_key, queries)
    with pytest.raises(ValueError, match="takes 3 channels, the key 1"):  # the model, before the data's shape
        verify(
            tiny_cnn(num_channels=3),
            small_key,
            queries.map(lambda r: {"pixel_values": r["pixel_values"].repeat(3, 1, 1)}),
        )


def test_unlabelled_queries_drop_the_label_term(small_key, queries):
    labelled = verify(small_key.ingrainer, small_key, queries)
    unlabelled = verify(small_key.ingrainer, small_key, queries.remove_columns("labels"))
    assert (
        "by_label" in labelled.details["null_rate_terms"] and "by_label" not in unlabelled.details["null_rate_terms"]
    )
    assert unlabelled.verified and not unlabelled.details["labelled"] and "accuracy" not in unlabelled.details


def test_calibrate_null_reports_each_model_and_flags_a_model_above_the_bound(small_key, queries, caplog):
    calibration = calibrate_null(small_key, queries, {f"seed {s}": tiny_cnn(seed=s) for s in range(3)})
    assert set(calibration.agreements) == {"seed 0", "seed 1", "seed 2"} and not calibration.any_verified
    assert calibration.max_agreement == max(calibration.agreements.values()) and calibration.max_excess < 0
    assert set(calibration.to_dict()) >= {"agreements", "p_values", "max_agreement", "any_verified"}
    with caplog.at_level(logging.WARNING, logger="hf_ingrain.verification.calibration"):
        leaked = calibrate_null(small_key, queries, [tiny_cnn(seed=0), small_key.ingrainer])
    assert leaked.any_verified and leaked.max_excess > 0 and "above the null rate" in caplog.text
    with pytest.raises(ValueError, match="empty"):
        calibrate_null(small_key, queries, [])


def test_ingrain_statistics_are_what_verify_counts(small_key, queries):
    model = tiny_cnn(seed=2)
    per_query = ingrain_statistics(model, small_key, queries)
    with pytest.warns(FutureWarning, match="ingrain_statistics"):
        assert ingrain_queries(model, small_key, queries)["null_rate"] == per_query["null_rate"]  # 0.1's name
    result = verify(model, small_key, queries)
    assert int((per_query["runner_up"] == per_query["ingrainer_choice"]).sum()) == result.num_agreements
    assert per_query["null_rate"] == result.null_rate and (per_query["runner_up"] != per_query["top"]).all()


def test_verify_hands_the_model_back_in_the_mode_it_came_in(small_key, queries):
    model = tiny_cnn(seed=2).train()
    verify(model, small_key, queries)
    assert model.training  # a verification in the middle of training does not switch dropout off for what follows
    verify(model.eval(), small_key, queries)
    assert not model.training


# ----------------------------------------------------------------------------------------------- trained models
@pytest.fixture(scope="module")
def trained():
    from trained_models import independent_model, ingrained_model, splits, trained_key

    return trained_key(), ingrained_model(), independent_model(0), splits()["test"]


@pytest.mark.slow
def test_ingrained_model_verifies_through_every_access_path_and_an_independent_one_does_not(trained):
    key, ingrained, independent, test = trained

    def access_paths(model):  # name -> (suspect, verify arguments, queries)
        return {
            "logits": (model, {}, test),
            "top-2": (model, dict(scores="top_k", top_k=2), test),
            "probabilities": (lambda batch: logits_of(model)(batch).softmax(-1), {}, test),
            "pipeline (top-5)": (image_pipeline(model), {}, test),
            "unlabelled": (model, {}, test.remove_columns("labels")),
        }

    owner_paths, independent_paths = access_paths(ingrained), access_paths(independent)
    for name in owner_paths:
        results = [
            verify(suspect, key, data, **kwargs)
            for suspect, kwargs, data in (owner_paths[name], independent_paths[name])
        ]
        print(f"{name}: ingrained p = {results[0].p_value:.3g}, independent p = {results[1].p_value:.3g}")
        assert results[0].details["scores"] == results[1].details["scores"]
        assert results[0].verified and not results[1].verified, name


def test_a_p_value_that_underflows_is_shown_as_a_bound_not_as_zero():
    from hf_ingrain.verification import VerificationResult, binomial_p_value, format_p_value

    p_value = binomial_p_value(7959, 10000, 0.163)  # the recipe's full-MNIST ResNet: far below the smallest double
    assert p_value == 0.0 and format_p_value(p_value) == "< 1e-300"
    assert format_p_value(2.3e-45) == "= 2.3e-45" and format_p_value(1.0) == "= 1"
    assert format_p_value(2.3e-45, relation=False) == "2.3e-45" and format_p_value(0.0, relation=False) == "< 1e-300"
    result = VerificationResult(True, p_value, 0.7959, 0.163, 10000, 7959, 1e-6, "ingrain")
    assert "p < 1e-300" in str(result) and "p = 0" not in str(result)
