"""The Python API: a catalog in memory, no AWS."""

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from pictrace.api import LocalIndex
from tests.conftest import jpeg, sample_bgr

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    (folder / "nested").mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        (folder / f"{name}.jpg").write_bytes(jpeg(sample_bgr(name)))
    cv2.imwrite(str(folder / "nested" / "rocket.png"), sample_bgr("rocket"))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_from_folder_indexes_images_recursively(photos):
    index = LocalIndex.from_folder(photos)
    assert len(index) == 4
    hits = index.search(jpeg(np.rot90(sample_bgr("rocket"))), k=2)
    assert Path(hits[0].meta["name"]).name == "rocket.png" and hits[0].transform == "rot90"


def test_small_partitions_give_the_same_answer_as_one(photos):
    one = LocalIndex.from_folder(photos)
    many = LocalIndex.from_folder(photos, partition_rows=1)
    q = jpeg(sample_bgr("coffee")[50:350, 100:500])
    assert [(h.id, round(h.score, 9)) for h in one.search(q, k=4)] == [(h.id, round(h.score, 9)) for h in many.search(q, k=4)]


def test_duplicates_and_removal(photos):
    index = LocalIndex.from_folder(photos)
    data = (photos / "coffee.jpg").read_bytes()
    image_id = index.add(data)
    assert len(index) == 4  # already there
    assert index.remove(image_id) and not index.remove(image_id)
    assert image_id not in [h.id for h in index.search(data, k=4)]


def test_readme_python_example_runs(photos, monkeypatch, capsys):
    code = re.search(r"### From Python.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(photos.parent)
    (photos.parent / "photos").symlink_to(photos, target_is_directory=True) if not (photos.parent / "photos").exists() else None
    (photos.parent / "query.jpg").write_bytes(jpeg(sample_bgr("chelsea")[::-1]))
    exec(compile(code, "README.md", "exec"), {})
    first = capsys.readouterr().out.splitlines()[0]
    assert "chelsea.jpg" in first and "mirror+rot180" in first


def test_save_and_load_keep_the_index(photos, tmp_path):
    index = LocalIndex.from_folder(photos)
    q = jpeg(sample_bgr("coffee")[50:350, 100:500])
    before = [(h.id, round(h.score, 9), h.meta) for h in index.search(q, k=3)]
    index.save(tmp_path / "saved")
    loaded = LocalIndex.load(tmp_path / "saved")
    assert len(loaded) == 4
    assert [(h.id, round(h.score, 9), h.meta) for h in loaded.search(q, k=3)] == before


def test_a_loaded_index_takes_adds_and_removals_without_changing_its_folder(photos, tmp_path):
    LocalIndex.from_folder(photos).save(tmp_path / "saved")
    files = {p.name: p.read_bytes() for p in (tmp_path / "saved").iterdir()}
    loaded = LocalIndex.load(tmp_path / "saved")
    extra = loaded.add(jpeg(sample_bgr("camera")), {"name": "camera"})
    coffee = next(h.id for h in loaded.search((photos / "coffee.jpg").read_bytes(), k=1))
    assert loaded.remove(coffee)
    assert {p.name: p.read_bytes() for p in (tmp_path / "saved").iterdir()} == files
    assert loaded.search(jpeg(sample_bgr("camera")), k=1)[0].id == extra
    loaded.save(tmp_path / "saved")
    again = LocalIndex.load(tmp_path / "saved")
    assert len(again) == 4 and extra in again and coffee not in again
    assert again.search(jpeg(sample_bgr("camera")), k=1)[0].meta == {"name": "camera"}


def test_detail_features_are_not_held_in_memory(photos):
    index = LocalIndex.from_folder(photos)
    held = sum(r.nbytes for r in index._rows.values())
    on_disk = index._details.path.stat().st_size
    assert held < 1024 * len(index) < on_disk


@pytest.mark.parametrize("damage", ["missing", "not-json", "other-version", "truncated-details"])
def test_loading_a_damaged_folder_is_a_clear_error(photos, tmp_path, damage):
    from pictrace.errors import CorruptShard

    folder = LocalIndex.from_folder(photos).save(tmp_path / "saved")
    if damage == "missing":
        folder = tmp_path / "nowhere"
    elif damage == "not-json":
        (folder / "index.json").write_text("{")
    elif damage == "other-version":
        (folder / "index.json").write_text('{"format": "pictrace-local-index", "version": 9}')
    else:
        data = (folder / "details.bin").read_bytes()
        (folder / "details.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptShard):
        LocalIndex.load(folder)
