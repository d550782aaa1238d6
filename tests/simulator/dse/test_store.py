import json

import pytest

from simulator.dse.store import ResultStore, SweepStoreError


def test_results_survive_a_torn_last_line(tmp_path):
    store = ResultStore(tmp_path / "out")
    store.open_for(resume=False)
    store.add_result({"key": "a", "v": 1})
    store.add_result({"key": "b", "v": 2})
    with store.points_path.open("a") as fh:
        fh.write('{"key": "c", "v"')  # killed mid-write
    assert sorted(store.results()) == ["a", "b"]


def test_an_altered_middle_line_is_an_error(tmp_path):
    store = ResultStore(tmp_path)
    store.points_path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(SweepStoreError, match=r"points.jsonl:2: not a JSON line"):
        store.results()
    store.points_path.write_text(json.dumps({"no_key": 1}) + "\n")
    with pytest.raises(SweepStoreError, match="without a point key"):
        store.results()


def test_existing_results_are_never_overwritten_without_resume(tmp_path):
    store = ResultStore(tmp_path)
    store.open_for(resume=False)
    store.add_result({"key": "a"})
    with pytest.raises(SweepStoreError, match="pass --resume"):
        ResultStore(tmp_path).open_for(resume=False)
    assert store.points_path.read_text().count("\n") == 1
    ResultStore(tmp_path).open_for(resume=True)  # resuming is fine


def test_a_file_in_the_way(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SweepStoreError, match="not a directory"):
        ResultStore(tmp_path / "f").open_for(resume=False)
