"""The pages ask for a queued photo's result quickly at first, then every 250 ms at most."""

import re

import pytest

from labeling.polling import RESULT_POLL_DELAYS_MS, result_poll_delay_ms


def test_the_first_ask_comes_well_before_a_quarter_of_a_second():
    # A warm worker stores a prediction some 30 ms after the upload.
    assert result_poll_delay_ms(0) <= 50
    assert sum(result_poll_delay_ms(i) for i in range(2)) <= 100


def test_no_wait_is_longer_than_250_ms_and_the_last_one_repeats():
    assert max(RESULT_POLL_DELAYS_MS) == RESULT_POLL_DELAYS_MS[-1] == 250
    assert [result_poll_delay_ms(i) for i in range(len(RESULT_POLL_DELAYS_MS), 40)] == [250] * (
        40 - len(RESULT_POLL_DELAYS_MS))
    assert all(ms > 0 for ms in RESULT_POLL_DELAYS_MS)


@pytest.mark.django_db
def test_every_page_carries_the_schedule_for_its_script(client, member):
    client.force_login(member)

    body = client.get("/").content.decode()

    match = re.search(r'<body data-result-poll-ms="([0-9,]+)">', body)
    assert match, "the home page's <body> has no data-result-poll-ms"
    assert tuple(int(ms) for ms in match.group(1).split(",")) == RESULT_POLL_DELAYS_MS
