"""runtime/hosts.py: a pod's place among the hosts of a multi-host run, from the environment
the operator's JobSet sets; bad values are bad input naming the variable."""

from __future__ import annotations

import pytest

from mutask.contract import ENV_ATTEMPT, ENV_HOST_INDEX, ENV_HOSTS, ExitCode
from mutask.trainer.errors import exit_code_of
from mutask.trainer.iteration.exchange import Worker
from mutask.trainer.runtime.hosts import Hosts, HostsError, hosts_from_env


def test_one_host_without_the_environment() -> None:
    assert hosts_from_env({}) == Hosts(0, 1, None)
    assert Worker(*Hosts().place()) == Worker(0, 1)


def test_a_host_of_a_jobset() -> None:
    env = {ENV_HOSTS: "4", ENV_HOST_INDEX: "2", ENV_ATTEMPT: "uid-1.0"}
    hosts = hosts_from_env(env)
    assert hosts == Hosts(2, 4, "uid-1.0")
    assert Worker(*hosts.place()) == Worker(2, 4)
    # with 4 chips per host, host 2's chips are workers 8..11 of 16
    assert [hosts.place(c, 4) for c in range(4)] == [(8, 16), (9, 16), (10, 16), (11, 16)]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({ENV_HOSTS: "two"}, "MUTASK_HOSTS='two': must be an integer"),
        ({ENV_HOSTS: "0"}, "MUTASK_HOSTS='0': must be at least 1"),
        (
            {ENV_HOSTS: "2", ENV_HOST_INDEX: "2", ENV_ATTEMPT: "a"},
            "MUTASK_HOST_INDEX=2: must be in 0..1",
        ),
        ({ENV_HOSTS: "2", ENV_HOST_INDEX: "-1", ENV_ATTEMPT: "a"}, "must be in 0..1"),
        (
            {ENV_HOSTS: "2", ENV_HOST_INDEX: "1"},
            "MUTASK_ATTEMPT='': required when MUTASK_HOSTS > 1",
        ),
    ],
)
def test_bad_environments_are_bad_input(env: dict[str, str], message: str) -> None:
    with pytest.raises(HostsError, match=message) as err:
        hosts_from_env(env)
    assert exit_code_of(err.value) == ExitCode.BAD_INPUT
