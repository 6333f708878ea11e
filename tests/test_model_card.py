"""The model card of a watermarked model (hf_ingrain.hub.model_card): golden file, metadata, no secrets, packaging."""

import importlib.resources
import logging
import os

import pytest
import transformers
from huggingface_hub import ModelCard

import hf_ingrain
from hf_ingrain import WatermarkKey
from hf_ingrain.hub.model_card import (
    TEMPLATE_PATH,
    WATERMARK_FIELDS,
    framework_versions,
    read_watermark_metadata,
    render_model_card,
    watermark_metadata,
)
from hf_ingrain.verification import VerificationResult

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden", "ingrain_model_card.md")
RESULT = VerificationResult(
    verified=True, p_value=4.5e-20, agreement=0.344, null_rate=0.218, num_queries=1000, num_agreements=344,
    alpha=1e-6, protocol="ingrain",
)
FIXED_VERSIONS = {"hf_ingrain": "0.1.0", "transformers": "5.0.0", "torch": "2.0.0"}


class _FixedCommitment:
    """Stands in for a key in the golden test: a commitment that does not move when the key format changes."""

    num_labels = 10

    def commitment(self):
        return "0123456789abcdef" * 4


def golden_card() -> str:
    block = watermark_metadata(
        _FixedCommitment(), RESULT, ingrain_lambda=0.5, ingrain_temperature=4.0, version="0.1.0",
        queries={"digest": "fedcba9876543210" * 4, "num_queries": 1000,
                 "test": {"protocol": "ingrain_labels", "alpha": 1e-6, "max_queries": 500, "ladder": "occlusion"}},
    )
    card = render_model_card(
        block, model_name="tiny-ingrained", repo_id="tester/tiny-ingrained", pipeline_tag="image-classification",
        versions=FIXED_VERSIONS,
    )
    return str(card)


def test_card_matches_golden_file():
    if os.environ.get("HF_INGRAIN_UPDATE_GOLDEN"):  # after a deliberate change of the template
        with open(GOLDEN, "w", encoding="utf-8") as f:
            f.write(golden_card())
    with open(GOLDEN, encoding="utf-8") as f:
        expected = f.read()
    assert golden_card() == expected, "the card changed; if on purpose, rerun with HF_INGRAIN_UPDATE_GOLDEN=1"


def test_card_metadata_carries_the_commitment_and_result_and_no_secret(tmp_path):
    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=5, seed=918273645)
    block = watermark_metadata(key, RESULT, ingrain_lambda=0.5, ingrain_temperature=4.0)
    assert set(block) == set(WATERMARK_FIELDS)
    assert block["key_commitment"] == key.commitment()
    assert block["verification"] == {
        "verified": True, "agreement": 0.344, "null_rate": 0.218, "p_value": 4.5e-20, "num_queries": 1000,
        "num_agreements": 344, "alpha": 1e-6,
    }
    assert block["library_version"] == hf_ingrain.__version__

    card = render_model_card(block, model_name="m", repo_id="tester/m", tags=["mnist"])
    card.save(str(tmp_path / "README.md"))
    text = (tmp_path / "README.md").read_text()
    assert key.commitment() in text
    assert key.salt.hex() not in text and str(key.seed) not in text
    assert "salt" not in text and "seed" not in text
    assert read_watermark_metadata(str(tmp_path / "README.md")) == block  # what verify_from_hub reads back
    assert card.data.tags[:3] == ["hf_ingrain", "ingrain", "watermark"] and "mnist" in card.data.tags


def test_the_card_names_the_commitments_timestamp_and_says_when_there_is_none():
    stamp = {"file": "commitment.tsr", "tsa": "/O=Some TSA/CN=TSA 1", "time": "2025-03-01T12:00:00.000+00:00"}
    block = watermark_metadata(_FixedCommitment(), RESULT, version="0.1.0", timestamp=stamp)
    assert block["timestamp"] == stamp
    text = str(render_model_card(block, model_name="m", repo_id="tester/m", versions=FIXED_VERSIONS))
    assert "timestamped by an RFC 3161 time-stamping authority (/O=Some TSA/CN=TSA 1) at 2025-03-01T12:00" in text
    assert "`commitment.tsr` in this repository" in text and "not timestamped" not in text
    assert "not timestamped" in golden_card() and "--timestamp-ca" in golden_card()


def test_card_without_key_or_verification_says_so():
    text = str(render_model_card(watermark_metadata(), model_name="m", versions=FIXED_VERSIONS))
    assert "(no commitment recorded)" in text
    assert "No verification was recorded" in text
    assert ModelCard(text).data.watermark["key_commitment"] is None


def test_unknown_watermark_field_is_refused():
    block = watermark_metadata(_FixedCommitment(), RESULT)
    with pytest.raises(ValueError, match="Unknown fields \\['salt'\\]"):
        render_model_card({**block, "salt": "00"}, model_name="m")


def test_malformed_card_reads_as_no_metadata(tmp_path, caplog):
    path = tmp_path / "README.md"
    path.write_text("---\nwatermark: [unclosed\n---\n# card\n")
    with caplog.at_level(logging.WARNING, logger="hf_ingrain.hub.model_card"):
        assert read_watermark_metadata(str(path)) is None


def test_template_ships_inside_the_package():
    packaged = importlib.resources.files("hf_ingrain").joinpath("hub/templates/ingrain_model_card.md")
    assert packaged.is_file() and os.path.samefile(str(packaged), TEMPLATE_PATH)
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:  # tomllib is 3.11+; 3.10 is supported
        section = f.read().split("[tool.setuptools.package-data]")[1].split("\n[")[0]
    package_data = next(line for line in section.splitlines() if line.startswith("hf_ingrain ="))
    assert '"hub/templates/*.md"' in package_data
    for template in ("ingrain_model_card.md", "attacked_model_card.md"):
        assert importlib.resources.files("hf_ingrain").joinpath("hub", "templates", template).is_file(), template
    with open(os.path.join(ROOT, "model_cards", "README.md"), encoding="utf-8") as f:
        assert "hf_ingrain/hub/templates/ingrain_model_card.md" in f.read()  # the pointer in model_cards/ stays true


def test_framework_versions_are_the_installed_ones():
    versions = framework_versions()
    assert versions["transformers"] == transformers.__version__
    assert versions["hf_ingrain"] == hf_ingrain.__version__


def test_an_underflowed_p_value_is_shown_as_a_bound_in_the_card():
    result = VerificationResult(True, 0.0, 0.7959, 0.163, 10000, 7959, 1e-6, "ingrain")
    block = watermark_metadata(_FixedCommitment(), result, ingrain_lambda=0.5, ingrain_temperature=4.0, version="0.1.0")
    card = str(render_model_card(block, model_name="m", versions=FIXED_VERSIONS))
    assert "| < 1e-300 |" in card and "| 0 |" not in card
