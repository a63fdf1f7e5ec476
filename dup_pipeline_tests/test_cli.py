import polars as pl
from click.testing import CliRunner

from dup_pipeline.cli import main
from dup_pipeline_tests.conftest import noise_image, save_image


def test_cli_run_writes_outputs_and_summary(tmp_path):
    images = tmp_path / "images"
    for i in range(6):
        save_image(images / "nested" / f"{i}.jpg", noise_image(i), "JPEG")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    result = CliRunner().invoke(main, ["run", str(images), str(tmp_path / "work"), "--range-size", "4"])
    assert result.exit_code == 0, result.output
    assert "files: 7, good images: 6, bad files: 1" in result.output
    assert "outputs: " in result.output
    assert pl.read_csv(tmp_path / "work" / "features.bad.csv")["filename"].to_list() == [str(images / "broken.jpg")]


def test_cli_list_file_input(tmp_path):
    a = save_image(tmp_path / "a.png", noise_image(1))
    listing = tmp_path / "files.txt"
    listing.write_text(f"{a}\n")
    result = CliRunner().invoke(main, ["run", str(listing), str(tmp_path / "work"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "files: 1, good images: 1" in result.output


def test_cli_errors_name_the_problem(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["run", str(tmp_path / "nope"), str(tmp_path / "w")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(main, ["run", str(tmp_path / "empty"), str(tmp_path / "w")])
    assert empty.exit_code == 1 and "no image files" in empty.output
    save_image(tmp_path / "imgs" / "a.png", noise_image(1))
    (tmp_path / "blocker").write_text("x")
    unwritable = runner.invoke(main, ["run", str(tmp_path / "imgs"), str(tmp_path / "blocker" / "w")])
    assert unwritable.exit_code == 1 and "not writable" in unwritable.output
    threads = runner.invoke(main, ["run", str(tmp_path / "imgs"), str(tmp_path / "w"), "--num-threads", "0"])
    assert threads.exit_code == 2 and "num_threads" in threads.output


def test_cli_demo(tmp_path):
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "demo"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "bad files: 4" in result.output
    assert (tmp_path / "demo" / "work" / "atrain_stats.csv").exists()


def test_cli_options_resource_fields_and_fastdup_names_come_from_settings(tmp_path):
    from dup_pipeline.core.config import SETTINGS_FIELDS, Settings, fastdup_names
    from dup_pipeline.dagster_defs.resources import DatasetResource

    options = {p.name: p for p in main.commands["run"].params}
    resource = DatasetResource(input_dir="in", work_dir="out")
    for f in SETTINGS_FIELDS:
        assert options[f.name].default == f.default, f.name
        assert getattr(resource, f.name) == f.default, f.name
    assert Settings().threshold == Settings().ccthreshold == 0.8 and Settings().faiss_mode == "auto"
    assert fastdup_names()["outlier_percentile"] == "lower_threshold" and fastdup_names()["annotations"] == "labels"
    assert resource.pipeline_config() == Settings().pipeline_config("in", "out")
    images = tmp_path / "images"
    for i in range(4):
        save_image(images / f"{i}.png", noise_image(i))
    result = CliRunner().invoke(main, ["run", str(images), str(tmp_path / "w"), "--no-run-cc", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "w" / "connected_components.csv").exists()
    bad = CliRunner().invoke(main, ["run", str(images), str(tmp_path / "w"), "--compute", "tpu"])
    assert bad.exit_code == 2 and "compute" in bad.output


def test_cli_run_mode_needing_existing_outputs_on_an_empty_work_dir(tmp_path):
    save_image(tmp_path / "imgs" / "a.png", noise_image(1))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "imgs"), str(tmp_path / "w"), "--run-mode", "4"])
    assert result.exit_code == 1 and "Usage:" not in result.output
    assert "run modes 2 and 4 need existing features" in result.output


def test_clean_drops_bad_files_and_all_but_one_of_each_duplicate_group(demo_dataset, tmp_path):
    work = tmp_path / "work"
    runner = CliRunner()
    assert runner.invoke(main, ["run", str(demo_dataset.images), str(work), "--quiet",
                                "--labels", str(demo_dataset.labels)]).exit_code == 0
    truth = demo_dataset.ground_truth()
    root = str(demo_dataset.images) + "/"
    dry = runner.invoke(main, ["clean", str(work), "--dry-run", "--exclude-wrong-labels"])
    assert dry.exit_code == 0, dry.output
    dropped = {line.split(": ", 1)[0].removeprefix("drop " + root): line.split(": ", 1)[1]
               for line in dry.output.splitlines() if line.startswith("drop ")}
    assert {f for f, why in dropped.items() if why.startswith("bad")} == set(truth["bad_files"])
    for a, b in truth["exact_duplicates"]:  # exactly one of each byte-identical pair is kept
        assert (a in dropped) != (b in dropped)
    assert {f for f, why in dropped.items() if why.startswith("wrong_label")} <= set(truth["wrong_labels"])
    keep_line = dry.output.splitlines()[-1]
    assert keep_line.startswith(f"keep {84 - len(dropped)} files, drop {len(dropped)} (")
    # the run already wrote the clean list without wrong-label exclusion; the dry run wrote nothing new
    kept = (work / "clean_manifest.txt").read_text().splitlines()
    assert len(kept) == 84 - len([w for w in dropped.values() if not w.startswith("wrong_label")])
    real = runner.invoke(main, ["clean", str(work), "--exclude-wrong-labels"])
    assert real.exit_code == 0 and "clean list:" in real.output
    assert len((work / "clean_manifest.txt").read_text().splitlines()) == 84 - len(dropped)
    assert pl.read_parquet(work / "clean_dropped.parquet").height == len(dropped)
    empty = runner.invoke(main, ["clean", str(tmp_path)])
    assert empty.exit_code == 1 and "run `dup-pipeline run" in empty.output
