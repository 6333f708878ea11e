import pytest
import torch

from hf_ingrain.losses import distillation_kl, hard_label_cross_entropy, scores_to_log_probs
from hf_ingrain.verification.statistics import runner_up


def test_distillation_kl_is_zero_for_identical_logits():
    logits = torch.randn(8, 10)
    assert distillation_kl(logits, logits.clone(), temperature=4.0).abs().item() < 1e-6
    assert distillation_kl(logits, logits + 3.0, temperature=4.0).abs().item() < 1e-6  # softmax shift invariance


def test_distillation_kl_is_positive_and_scaled_by_temperature_squared():
    torch.manual_seed(0)
    student, teacher = torch.randn(16, 10), torch.randn(16, 10)
    for temperature in (1.0, 2.0, 4.0):
        manual = torch.nn.functional.kl_div(
            torch.log_softmax(student / temperature, -1), torch.log_softmax(teacher / temperature, -1),
            log_target=True, reduction="batchmean",
        )
        loss = distillation_kl(student, teacher, temperature)
        assert loss.item() > 0
        torch.testing.assert_close(loss, manual * temperature**2)


def test_distillation_kl_under_gradient_accumulation_adds_up_to_the_full_batch_mean():
    torch.manual_seed(0)
    student, teacher = torch.randn(12, 5), torch.randn(12, 5)
    full = distillation_kl(student, teacher, 2.0)
    # Unequal micro-batches (5 + 7): dividing each sum by the number of items of the whole batch is exact,
    # averaging the two micro-batch means is not.
    parts = [distillation_kl(student[s], teacher[s], 2.0, num_items_in_batch=12) for s in (slice(0, 5), slice(5, 12))]
    torch.testing.assert_close(sum(parts), full)
    naive = (distillation_kl(student[:5], teacher[:5], 2.0) + distillation_kl(student[5:], teacher[5:], 2.0)) / 2
    assert not torch.allclose(naive, full)


def test_distillation_kl_reductions_and_mixed_precision():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    per_example = distillation_kl(student, teacher, reduction="none")
    assert per_example.shape == (4,)
    torch.testing.assert_close(distillation_kl(student, teacher, reduction="sum"), per_example.sum())
    half = distillation_kl(student.bfloat16(), teacher.bfloat16())
    assert half.dtype == torch.float32


def test_distillation_kl_rejects_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        distillation_kl(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0)
    with pytest.raises(ValueError, match="same number of labels"):
        distillation_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        distillation_kl(torch.zeros(2, 3), torch.zeros(2, 3), reduction="avg")


def test_hard_label_cross_entropy_uses_labels_only():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    assert hard_label_cross_entropy(logits, torch.tensor([0, 1])).item() < 0.02
    assert hard_label_cross_entropy(logits, torch.tensor([2, 2])).item() > 4


def test_scores_to_log_probs_top_k_keeps_the_top_scores_and_spreads_the_rest():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    probs = scores.softmax(-1)
    kept = scores_to_log_probs(scores, "top_k", top_k=2).exp()
    torch.testing.assert_close(kept[0, :2], probs[0, :2])
    assert torch.isclose(kept[0, 2], kept[0, 3])  # the unknown mass is spread evenly
    torch.testing.assert_close(kept.sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="top_k"):
        scores_to_log_probs(scores, "top_k", top_k=0)


def test_runner_up_excludes_the_given_class():
    logits = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.6]])
    assert runner_up(logits).tolist() == [2, 2]
    assert runner_up(logits, exclude=torch.tensor([2, 0])).tolist() == [1, 2]


def test_the_spread_loss_of_several_ingrainers_is_each_ones_spread_loss():
    from hf_ingrain.losses import ingrainer_spread_loss, ingrainer_spread_loss_per_member

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, 5, generator=generator) * 3
    labels = torch.randint(0, 5, (3, 40), generator=generator)
    labels[1] = labels[1] % 4  # member 1 has no input of class 4: an empty group adds nothing
    for with_labels in (True, False):
        batched = ingrainer_spread_loss_per_member(logits, labels if with_labels else None, 5, 0.3)
        assert batched.shape == (3,)
        for member in range(3):
            alone = ingrainer_spread_loss(logits[member], labels[member] if with_labels else None, 5, 0.3)
            torch.testing.assert_close(batched[member], alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(batched[0], batched[1])
