"""The census of a running config: keys per by (named by place), events dropped for skew."""

from __future__ import annotations

from streams import (
    Event,
    Runtime,
    VirtualClock,
    bit_bucket,
    by,
    by_builder,
    ewma,
    index,
    rate,
    throttle,
    where,
)
from streams._census import census


def test_every_by_is_named_by_its_place_and_nested_ones_are_summed_over_forks() -> None:
    outer = by("host", by("service", rate(5, bit_bucket())))
    flat = where('service = "x"', by(["host", "service"], rate(5, bit_bucket())))
    built = by_builder("host", lambda host: by("service", bit_bucket()))
    for host in "abc":
        for service in "xy":
            event = Event(host=host, service=service, metric=1, time=0)
            outer(event), flat(event), built(event)
    found = census([index, outer, flat, built])
    assert found.by_keys == {
        "streams[1]/by('host')": 3,
        "streams[1]/by('host')/by('service')": 6,
        "streams[2]/where/by(['host', 'service'])": 3,
        "streams[3]/by_builder('host')": 3,
        "streams[3]/by_builder('host')/by('service')": 6,
    }
    assert found.total_keys == 21 and not found.estimated
    assert found.largest == ("streams[1]/by('host')/by('service')", 6)


def test_skewed_events_are_counted_in_every_fork() -> None:
    with Runtime(VirtualClock(1000)):
        stream = by("host", ewma(5, bit_bucket()))
        for host in "abcd":
            stream(Event(host=host, metric=1, time=1000 + 86400))
        stream(Event(host="a", metric=1, time=1000))
    assert census([stream]).skewed == 4


def test_many_forks_are_sampled_and_the_figures_scaled() -> None:
    stream = by("host", by("service", bit_bucket()))
    for n in range(300):
        stream(Event(host=f"h{n}", service="s"))
        stream(Event(host=f"h{n}", service="t"))
    exact, sampled = census([stream]), census([stream], forks_walked=30)
    assert exact.by_keys["streams[0]/by('host')/by('service')"] == 600
    assert sampled.by_keys["streams[0]/by('host')/by('service')"] == 600
    assert sampled.estimated and not exact.estimated


def test_a_by_over_plain_streams_is_not_walked_fork_by_fork() -> None:
    stream = by("host", throttle(1, 5, bit_bucket()))
    for n in range(50):
        stream(Event(host=f"h{n}", metric=1, time=0))
    # No fork holds anything to count: the sample size does not matter, nothing is estimated.
    assert census([stream], forks_walked=1) == census([stream])
    assert not census([stream], forks_walked=1).estimated
