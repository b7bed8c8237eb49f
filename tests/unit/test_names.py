"""Names and values from the command line or the panel's API are matched whole: Python's `$`
also matches before a final newline, so `prod\n` once passed for an app name."""

import pytest

from deploy.flows.cleanup import WHOLE_NUMBER
from deploy.flows.schedule import AT
from deploy.host import layout
from deploy.host.panel_store import PanelError, _check_name


@pytest.mark.parametrize("value", ["prod\n", "prod\nx", " prod", "", "Prod"])
def test_app_names_are_matched_whole(value):
    with pytest.raises(layout.InvalidName):
        layout.app_name(value)


@pytest.mark.parametrize("value", ["2026r1\nx", "2026.1\nrm", "2026r1 x", "x2026r1"])
def test_release_names_are_matched_whole(value):
    with pytest.raises(layout.InvalidName):
        layout.release_name(value)


def test_a_release_name_is_used_as_stripped():
    # Surrounding blanks (a pasted value) go; what is used is the clean name.
    assert layout.release_name(" 2026r1\n") == "2026r1"


def test_good_names_pass():
    assert layout.release_name("2026r1") == "2026r1"
    assert layout.release_name("2026.1") == "2026_1"
    assert layout.app_name("randopony") == "randopony"


def test_the_panel_and_the_tasks_match_whole():
    _check_name("app", "prod")
    with pytest.raises(PanelError):
        _check_name("app", "prod\n")
    assert AT.fullmatch("03:00") and not AT.fullmatch("03:00\n")
    assert WHOLE_NUMBER.fullmatch("2") and not WHOLE_NUMBER.fullmatch("2\n")
