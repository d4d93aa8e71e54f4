"""The DICOM series index is read once per process while its files are unchanged, and its
warnings are logged once: training calls ``load_frames`` for every sample in every epoch.

Header reads are counted at ``pydicom.dcmread`` itself: a series of F files with S slices
sampled costs F header reads (the index) plus S pixel reads the first time, and S pixel reads
(no header read) every time after.
"""

from __future__ import annotations

import logging
import os

import pydicom
import pytest
from test_series import axial_positions, grey, series, write_series

from medvl.data import series_cache
from medvl.data.series_cache import clear_series_cache, series_index
from medvl.data.volumes import describe_video, load_frames


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_series_cache()
    yield
    clear_series_cache()


@pytest.fixture
def dcmread_calls(monkeypatch) -> list[str]:
    """The file name of every ``pydicom.dcmread`` call, in order."""
    calls: list[str] = []
    real = pydicom.dcmread

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(str(path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counting)
    return calls


def gap_series(folder) -> list:
    """6 axial slices 2.5 mm apart with the 4th missing: 5 files, one missing-slice warning."""
    positions = axial_positions(6)
    del positions[3]
    return write_series(folder, positions)


def test_second_call_reads_no_header_and_warns_once(tmp_path, dcmread_calls, caplog):
    files = gap_series(tmp_path / "s")
    spec = series(tmp_path / "s", sample={"n": 3})
    with caplog.at_level(logging.WARNING, logger="medvl.data.series_cache"):
        first = load_frames(spec, tmp_path)
        after_first = len(dcmread_calls)
        second = load_frames(spec, tmp_path)
        third = load_frames(spec, tmp_path)
    assert after_first == len(files) + 3  # every header once, then the 3 sampled slices
    assert len(dcmread_calls) - after_first == 2 * 3  # pixels only: no header read again
    assert grey(first) == grey(second) == grey(third)
    missing = [r for r in caplog.records if "missing slice" in r.getMessage()]
    assert len(missing) == 1, [r.getMessage() for r in caplog.records]


def test_describe_then_load_reads_the_headers_once(tmp_path, dcmread_calls):
    files = write_series(tmp_path / "s", axial_positions(4))
    spec = series(tmp_path / "s")
    assert describe_video(spec, tmp_path).count == 4  # validation: headers only
    assert len(dcmread_calls) == len(files)
    load_frames(spec, tmp_path)  # training: the 4 slices' pixels, no header again
    assert len(dcmread_calls) == len(files) + 4


def test_a_changed_added_or_removed_file_means_a_fresh_read(tmp_path, dcmread_calls):
    files = write_series(tmp_path / "s", axial_positions(4))
    spec = series(tmp_path / "s")
    assert describe_video(spec, tmp_path).count == 4
    reads = len(dcmread_calls)
    info = files[0].stat()
    os.utime(files[0], ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # touched
    assert describe_video(spec, tmp_path).count == 4
    assert len(dcmread_calls) - reads == 4
    extra = axial_positions(5)[4:]  # a fifth slice added, same series
    write_series(tmp_path / "s", extra, names=["IM9999.dcm"], instances=[5])
    assert describe_video(spec, tmp_path).count == 5
    files[1].unlink()
    assert describe_video(spec, tmp_path).count == 4


def test_the_cache_is_bounded_least_recently_used_first(tmp_path, dcmread_calls, monkeypatch):
    monkeypatch.setattr(series_cache, "SERIES_CACHE_SIZE", 2)
    for name in ("a", "b", "c"):
        write_series(tmp_path / name, axial_positions(2))
    for name in ("a", "b", "a", "c"):  # c pushes out b (a was used after b)
        series_index(tmp_path / name)
    assert len(dcmread_calls) == 3 * 2
    series_index(tmp_path / "a")
    assert len(dcmread_calls) == 3 * 2  # still cached
    series_index(tmp_path / "b")
    assert len(dcmread_calls) == 4 * 2  # read again


def test_callers_get_a_copy(tmp_path):
    gap_series(tmp_path / "s")
    first = series_index(tmp_path / "s")
    first.warnings.clear()
    first.slices.pop()
    again = series_index(tmp_path / "s")
    assert len(again.warnings) == 1 and len(again.slices) == 5
