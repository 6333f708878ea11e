import json

import pytest
from conftest import tiny_cnn
from trained_models import single_thread  # noqa: F401 (autouse fixture: this module runs on one thread)

from hf_ingrain.cli import main
from hf_ingrain.watermarks import AdiKey


@pytest.fixture(scope="module")
def folders(small_key, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    small_key.save(root / "key")
    small_key.ingrainer.save_pretrained(root / "watermarked")  # ranks classes exactly like the ingrainer
    tiny_cnn(seed=3).save_pretrained(root / "independent")
    AdiKey.generate(10, num_triggers=20, seed=0).save(root / "adi_key")
    return {name: str(root / name) for name in ("key", "watermarked", "independent", "adi_key")}


def test_a_watermarked_model_exits_0_with_a_readable_summary(folders, capsys):
    code = main(["verify", folders["watermarked"], "--key", folders["key"]])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("WATERMARK PRESENT") and "precedence not checked" in out.splitlines()[0]
    for line in ("protocol      ingrain", "p-value", "by_top_class", "mnist-5k / test", "commitment"):
        assert line in out, line


def test_json_on_request_and_exit_1_when_not_verified(folders, small_key, capsys):
    code = main(["verify", folders["independent"], "--key", folders["key"], "--json", "--data", "mnist-5k"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["verified"] is False and report["protocol"] == "ingrain"
    assert report["key_commitment"] == small_key.commitment() and report["num_queries"] == 1000
    assert set(report) >= {"p_value", "agreement", "null_rate", "alpha", "details", "data"}


def test_carriers_protocol_and_alpha(folders, capsys):
    assert main(["verify", folders["watermarked"], "--key", folders["key"], "--protocol", "carriers"]) == 0
    # 20 carriers all right: p = 0.1^20 = 1e-20, which does not pass a stricter alpha
    assert (
        main(["verify", folders["watermarked"], "--key", folders["key"], "--protocol", "carriers", "--alpha", "1e-30"])
        == 1
    )
    assert "carriers" in capsys.readouterr().out


def test_top_k_one_is_refused_for_ingrain_but_fine_for_carriers(folders, capsys):
    assert main(["verify", folders["watermarked"], "--key", folders["key"], "--top-k", "1"]) == 2
    assert "protocol='carriers'" in capsys.readouterr().err
    assert (
        main(["verify", folders["watermarked"], "--key", folders["key"], "--protocol", "carriers", "--top-k", "1"])
        == 0
    )


def test_a_baseline_key_is_verified_by_its_scheme(folders, capsys):
    assert main(["verify", folders["independent"], "--key", folders["adi_key"], "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["protocol"] == "trigger_set" and report["data"] is None and report["details"]["scheme"] == "adi"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{watermarked}", "--key", "{watermarked}"], "key.json"),
        (["no/such/model", "--key", "{key}"], "local folder"),
        (["{watermarked}", "--key", "{key}", "--alpha", "2"], "--alpha"),
        (["{watermarked}", "--key", "{key}", "--split", "validation"], "validation"),
    ],
)
def test_errors_exit_2_with_one_line(folders, capsys, arguments, message):
    code = main(["verify", *[a.format(**folders) for a in arguments]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("hf-ingrain: error:") and err.count("\n") == 1


def test_split_all_queries_every_split(folders, capsys):
    # mnist-5k: owner 2,000 + attacker 2,000 + test 1,000 benign images, all read; 27 of them are near copies of an
    # earlier digit (within 5/255 on the 8x8 grid, hf_ingrain.data.near_duplicates; measured) and count once
    code = main(["verify", folders["watermarked"], "--key", folders["key"], "--split", "all", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["data"]["split"] == "all"
    assert report["num_queries"] + report["num_near_duplicates"] + report["num_duplicates"] == 5000
    assert (report["num_near_duplicates"], report["num_duplicates"]) == (27, 0)


def test_a_local_model_is_loaded_once(folders, capsys, monkeypatch):
    from hf_ingrain.suspects import loading

    loads = []
    original = loading._load_folder
    monkeypatch.setattr(loading, "_load_folder", lambda *args: loads.append(args[0]) or original(*args))
    assert main(["verify", folders["watermarked"], "--key", folders["key"]]) == 0
    assert loads == [folders["watermarked"]]  # checked before the data is loaded, then verified: one load
    assert main(["verify", folders["watermarked"], "--key", folders["key"], "--revision", "main"]) == 2
    assert "Hub ids only" in capsys.readouterr().err


@pytest.mark.slow  # ~7 s; CI runs it, the default pytest stays within its 5 minutes
def test_label_only_protocols_from_the_command_line(folders, capsys):
    # The "watermarked" model is the ingrainer itself: the label it falls back to when occluded is, far more often
    # than for an independent model, the class the key chose.
    args = ["--key", folders["key"], "--protocol", "ingrain_labels", "--max-queries", "2000"]
    assert main(["verify", folders["watermarked"], *args]) == 0
    out = capsys.readouterr().out
    assert "protocol      ingrain_labels" in out and "queries for" in out and "over" in out
    assert main(["verify", folders["independent"], *args, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["details"]["queries_sent"] <= 2000 and report["details"]["ladder"] == "occlusion"
    assert main(["verify", folders["watermarked"], "--key", folders["key"], "--protocol", "ingrain_labels",
                 "--max-queries", "0"]) == 2
    assert "--max-queries must be >= 1" in capsys.readouterr().err
