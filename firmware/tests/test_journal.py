"""The journal survives a power cut at any byte, and compaction is atomic."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.journal import FileJournal, MemoryJournal, frame, unframe

RECORDS = [{"t": "s", "st": {"seq": n, "meter": "m-1"}} for n in range(1, 6)]


def test_frame_round_trip_and_corruption_is_detected():
    line = frame({"t": "s", "st": {"b": 1, "a": "é"}})
    assert unframe(line) == {"t": "s", "st": {"b": 1, "a": "é"}}
    for index in range(len(line)):
        flipped = line[:index] + bytes([line[index] ^ 0x01]) + line[index + 1 :]
        assert unframe(flipped) is None, index
    assert unframe(line[:-1]) is None


@given(st.integers(1, len(frame(RECORDS[-1])) - 1))
def test_memory_journal_cut_inside_the_last_record_keeps_the_others(cut):
    journal = MemoryJournal()
    for record in RECORDS:
        journal.append(record)
    journal.tear(cut)
    assert journal.load() == RECORDS[:-1]
    assert journal.corrupt == 1


@given(st.integers(0, sum(len(frame(record)) for record in RECORDS)))
def test_any_cut_loads_a_prefix(cut):
    journal = MemoryJournal()
    for record in RECORDS:
        journal.append(record)
    journal.tear(cut)
    loaded = journal.load()
    assert loaded == RECORDS[: len(loaded)]


def test_file_journal_round_trip_and_torn_tail(tmp_path):
    journal = FileJournal(str(tmp_path / "data"))
    assert journal.load() == []
    for record in RECORDS:
        journal.append(record)
    with open(journal.path, "ab") as handle:
        handle.write(frame({"t": "s", "st": {"seq": 99}})[:-7])  # the power went out here
    again = FileJournal(str(tmp_path / "data"))
    assert again.load() == RECORDS
    assert again.corrupt == 1
    again.rewrite(RECORDS[-2:])
    assert FileJournal(str(tmp_path / "data")).load() == RECORDS[-2:]
    assert again.size() == os.stat(again.path).st_size


def test_unfinished_compaction_is_discarded(tmp_path):
    journal = FileJournal(str(tmp_path))
    for record in RECORDS:
        journal.append(record)
    with open(journal.new_path, "wb") as handle:
        handle.write(frame(RECORDS[0]))  # no end record: the cut came mid-compaction
    assert FileJournal(str(tmp_path)).load() == RECORDS
    assert not os.path.exists(journal.new_path)


def test_compaction_left_alone_after_removing_the_log_is_taken(tmp_path):
    # FAT cannot rename over a file: rewrite() removes the log first. A cut
    # between the two leaves only the complete .new.
    journal = FileJournal(str(tmp_path))
    journal.rewrite(RECORDS[:2])
    os.rename(journal.path, journal.new_path)
    assert FileJournal(str(tmp_path)).load() == RECORDS[:2]
    assert os.path.exists(journal.path) and not os.path.exists(journal.new_path)


def test_incomplete_lone_compaction_is_not_trusted(tmp_path):
    journal = FileJournal(str(tmp_path))
    with open(journal.new_path, "wb") as handle:
        handle.write(frame(RECORDS[0]) + frame({"t": "end", "n": 2}))
    assert FileJournal(str(tmp_path)).load() == []


@pytest.mark.parametrize("journal_kind", ["memory", "file"])
def test_rewrite_replaces_everything(tmp_path, journal_kind):
    journal = MemoryJournal() if journal_kind == "memory" else FileJournal(str(tmp_path))
    for record in RECORDS:
        journal.append(record)
    journal.rewrite([RECORDS[0]])
    journal.append(RECORDS[4])
    assert journal.load() == [RECORDS[0], RECORDS[4]]
