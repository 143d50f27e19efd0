"""Field lists from arguments, --fields FILE and stdin."""

import io

import pytest

from celestecli.errors import UsageError
from celestecli.fields import FieldID, collect_fields


def test_fields_come_from_arguments_a_file_and_stdin_in_order_without_repeats(tmp_path):
    listing = tmp_path / "fields.txt"
    listing.write_text("# night 1\n4263/5/119\n\n2583-2-136  # M2\n")
    stdin = io.StringIO("3900/6/269\n4263/5/119\n")
    got = collect_fields(["1000/1/100", "-"], listing, stdin)
    assert got == [FieldID(1000, 1, 100), FieldID(3900, 6, 269), FieldID(4263, 5, 119),
                   FieldID(2583, 2, 136)]


def test_fields_file_dash_reads_stdin():
    stdin = io.StringIO("4263/5/119\n2583/2/136\n")
    assert collect_fields([], "-", stdin) == [FieldID(4263, 5, 119), FieldID(2583, 2, 136)]


def test_unreadable_fields_file_is_a_usage_error_naming_it(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(UsageError, match="nope.txt"):
        collect_fields([], missing, io.StringIO())
