import os

import evaluate
import pytest
from conftest import tiny_cnn
from scipy.stats import binom
from trained_models import single_thread  # noqa: F401 (autouse fixture: this module runs on one thread)

from hf_ingrain.metrics import metric_path
from hf_ingrain.verification import ingrain_statistics, verify


@pytest.fixture(scope="module")
def metric():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest: nothing may come from the Hub
    return evaluate.load(metric_path("ingrain_watermark"))


def test_the_metric_ships_in_the_package_and_loads_by_path(metric):
    script = os.path.join(metric_path(), "ingrain_watermark.py")
    assert os.path.isfile(script) and "hf_ingrain" in os.path.dirname(metric_path())
    assert isinstance(metric, evaluate.Metric) and "runner-up" in metric.description
    assert evaluate.load(script).compute(predictions=[1], references=[1], null_rate=0.5)["agreement"] == 1.0
    with pytest.raises(ValueError, match="Unknown metric"):
        metric_path("accuracy")


def test_agreement_p_value_and_verdict(metric):
    result = metric.compute(predictions=[1] * 80 + [0] * 20, references=[1] * 100, null_rate=0.2)
    assert result["agreement"] == 0.8 and result["num_agreements"] == 80 and result["num_queries"] == 100
    assert result["p_value"] == pytest.approx(binom.sf(79, 100, 0.2)) and result["verified"]
    weaker = metric.compute(predictions=[1] * 80 + [0] * 20, references=[1] * 100, null_rate=0.75)
    assert weaker["p_value"] > 0.05 and not weaker["verified"]
    assert not metric.compute(predictions=[3, 1], references=[3, 1], null_rate=0.1, alpha=1e-6)["verified"]
    assert metric.compute(predictions=[3, 1], references=[3, 1], null_rate=0.1, alpha=0.05)["verified"]


def test_batches_add_up(metric):
    for _ in range(4):
        metric.add_batch(predictions=[2] * 25, references=[2] * 20 + [0] * 5)
    assert metric.compute(null_rate=0.2)["num_agreements"] == 80


def test_null_rate_is_required(metric):
    with pytest.raises(ValueError, match="null_rate"):
        metric.compute(predictions=[1], references=[1])
    with pytest.raises(ValueError, match="alpha"):
        metric.compute(predictions=[1], references=[1], null_rate=0.1, alpha=1.5)


def test_the_metric_reproduces_verify(metric, small_key, embedded_splits):
    queries = embedded_splits["test"].select(range(300))
    for model in (small_key.ingrainer, tiny_cnn(seed=1)):  # verified, then not
        per_query = ingrain_statistics(model, small_key, queries)
        expected = verify(model, small_key, queries)
        result = metric.compute(
            predictions=per_query["runner_up"].tolist(),
            references=per_query["ingrainer_choice"].tolist(),
            null_rate=per_query["null_rate"],
        )
        assert result["num_agreements"] == expected.num_agreements and result["verified"] == expected.verified
        assert result["p_value"] == pytest.approx(expected.p_value, rel=1e-9, abs=1e-300)
